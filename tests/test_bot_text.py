"""What the bot's messages look like: splitting, alt text within Telegram's limits, Markdown fallback."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from bot.core.text import (
    ALT_TEXT_HEADER,
    CAPTION_LIMIT,
    Said,
    alt_text,
    describe,
    is_question,
    noting_model_language,
    split_message,
    utf16_length,
    with_alt_text,
    without_mention,
)
from clipchat.facts import PhotoFacts, Tag

WORDS = st.sampled_from(["a", "word", "🎨", "🎨🎨🎨", "naïve", "𝕏", "longerword", "Ünïcödé"])
SEPARATORS = st.sampled_from([" ", " ", " ", "\n", "\n\n"])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(WORDS, SEPARATORS), min_size=60, max_size=600), st.integers(2, 8))
def test_long_messages_split_within_the_utf16_limit_and_keep_every_word(parts, pieces_wanted: int) -> None:
    text = "".join(word + separator for word, separator in parts)
    limit = max(40, utf16_length(text) // pieces_wanted)  # always shorter than the text: it must be split
    pieces = split_message(text, limit=limit)
    assert len(pieces) >= 2
    assert all(0 < utf16_length(piece) <= limit for piece in pieces)
    assert " ".join(pieces).split() == text.split()  # every word, in order, none cut in two


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(WORDS, SEPARATORS, st.booleans()), min_size=60, max_size=400), st.integers(2, 8))
def test_a_split_reply_keeps_exactly_its_hidden_words_hidden(parts, pieces_wanted: int) -> None:
    """Words about a spoiler photo stay hidden in whichever piece of a long reply they land, and only they."""
    said = Said("")
    for word, separator, spoiler in parts:
        said = said + Said.about(word, spoiler) + separator
    limit = max(40, utf16_length(said.text) // pieces_wanted)
    pieces = said.split(limit)
    assert [piece.text for piece in pieces] == split_message(said.text, limit)
    hidden_in_pieces = [
        (char, any(a <= index < b for a, b in piece.hidden))
        for piece in pieces
        for index, char in enumerate(piece.text)
        if not char.isspace()
    ]
    hidden_in_whole = [
        (char, any(a <= index < b for a, b in said.hidden))
        for index, char in enumerate(said.text)
        if not char.isspace()
    ]
    assert hidden_in_pieces == hidden_in_whole  # every character, in order, hidden exactly when it was
    assert all(0 <= a < b <= len(piece.text) for piece in pieces for a, b in piece.hidden)


def test_words_about_a_spoiler_photo_are_hidden_and_notes_about_the_models_are_not() -> None:
    facts = PhotoFacts("a red circle", (Tag("red", 0.9),), np.zeros(4), "clip")
    caption = alt_text("Our poster 🎨", facts, spoiler=True)
    assert caption.text == "Our poster 🎨\n\n" + ALT_TEXT_HEADER + "A red circle."
    assert [caption.text[a:b] for a, b in caption.hidden] == ["A red circle."]
    assert alt_text("Our poster", facts).hidden == ()
    said = Said.about("A red circle.", spoiler=True)
    noted = noting_model_language(said, "es")
    assert noted.text.startswith("A red circle.\n\n") and noted.hidden == ((0, len("A red circle.")),)
    assert ("Look: " + said + "!").hidden == ((6, 6 + len("A red circle.")),)


def test_an_emoji_heavy_reply_splits_within_telegrams_4096_units() -> None:
    text = " ".join(["🎨🎨🎨", "word", "𝕏"] * 1500)  # 4,500 words, about 15,000 UTF-16 units
    pieces = split_message(text)
    assert all(utf16_length(piece) <= 4096 for piece in pieces) and " ".join(pieces).split() == text.split()


def test_a_long_run_without_spaces_is_cut_hard_and_loses_nothing() -> None:
    text = "🎨" * 5000  # 10,000 UTF-16 units, nowhere to cut nicely
    pieces = split_message(text, limit=4096)
    assert [utf16_length(piece) for piece in pieces] == [4096, 4096, 1808] and "".join(pieces) == text


def test_long_replies_are_cut_between_words() -> None:
    pieces = split_message(" ".join(["word"] * 2000), limit=4096)
    assert len(pieces) == 3 and all(not p.startswith(" ") and p.endswith("word") for p in pieces)


AUTHORS = st.text(alphabet=st.sampled_from("ab 🎨\n"), max_size=1100)
DESCRIPTIONS = st.text(alphabet=st.sampled_from("xy 🖼."), min_size=1, max_size=1200)


@settings(max_examples=300, deadline=None)
@example("", "x" * 1200)  # the description alone is too long: truncated
@example("🎨" * 500, "a red circle")  # the author's caption leaves no room: left alone
@example("Our poster", "A red circle on grass.")  # room for all of it
@given(AUTHORS, DESCRIPTIONS)
def test_alt_text_keeps_the_authors_caption_and_fits_1024(author: str, description: str) -> None:
    caption = with_alt_text(author, description)
    head = author + ("\n\n" if author else "") + ALT_TEXT_HEADER
    room = CAPTION_LIMIT - utf16_length(head)
    if room < 12:
        assert caption is None  # not even a few words fit: the post stays as the author wrote it
        return
    assert caption.startswith(head) and utf16_length(caption) <= CAPTION_LIMIT
    if utf16_length(description) <= room:
        assert caption == head + description
    else:  # truncated: as much of the description as fits beside the ellipsis, and the ellipsis
        fits, used = 0, 0
        for char in description:
            used += utf16_length(char)
            if used > room - 1:
                break
            fits += 1
        assert caption == head + description[:fits].rstrip() + "…"


def test_a_description_is_a_sentence_with_hashtags() -> None:
    facts = PhotoFacts("a red circle on grass", (Tag("red", 0.9), Tag("green grass", 0.5)), np.zeros(4), "clip")
    assert describe(facts) == "A red circle on grass.\nTags: #red, #green_grass"


@pytest.mark.parametrize("ending", [".", "", " .", ".."])
def test_channel_alt_text_ends_the_description_with_one_full_stop(ending: str) -> None:
    """It was the caption's own full stop plus one more: 'A large green circle on a striped background..'."""
    caption = "a large green circle on a striped background"
    facts = PhotoFacts(caption + ending, (Tag("green", 0.9),), np.zeros(4), "clip")
    sentence = "A large green circle on a striped background."
    assert alt_text("Our poster", facts).text == "Our poster\n\n" + ALT_TEXT_HEADER + sentence
    assert describe(facts) == sentence + "\nTags: #green"


def test_descriptions_keep_the_captions_capitals_and_own_ending() -> None:
    """str.capitalize() made 'a view of Paris' into 'A view of paris.'."""
    paris = PhotoFacts("a view of Paris at night", (), np.zeros(4), "clip")
    assert alt_text("", paris).text == ALT_TEXT_HEADER + "A view of Paris at night."
    wow = PhotoFacts("what a sunset!", (), np.zeros(4), "clip")
    assert alt_text("", wow).text == ALT_TEXT_HEADER + "What a sunset!" and describe(wow) == "What a sunset!"


def test_questions_and_mentions_are_recognised() -> None:
    assert is_question("what colour is it") and is_question("Nice, right?") and not is_question("my cat")
    assert without_mention("@Clipchat_Bot  what is this?", "clipchat_bot") == "what is this?"


async def test_markdown_that_telegram_rejects_is_resent_as_plain_text(telegram) -> None:
    from telegram import Bot, Message

    from bot.adapter.sending import reply
    from tests.conftest import BOT_TOKEN
    from tests.fake_telegram import private, user

    telegram.fail("sendMessage", code=400, description="Bad Request: can't parse entities: unclosed bold")
    async with Bot(BOT_TOKEN, base_url=telegram.base_url) as bot:
        message = Message.de_json(telegram.message(private(1), user(1), text="hi"), bot)
        sent = await reply(message, "*unbalanced", markdown=True)
    refused, delivered = telegram.sent("sendMessage", refused=True)
    assert refused.params["parse_mode"] == "Markdown" and "parse_mode" not in delivered.params
    assert sent.text == "*unbalanced" == delivered.text


async def test_an_emoji_heavy_reply_reaches_telegram_in_pieces_it_accepts(telegram) -> None:
    from telegram import Bot, Message

    from bot.adapter.sending import reply
    from tests.conftest import BOT_TOKEN
    from tests.fake_telegram import private, user

    text = " ".join(["🎨🎨🎨", "word"] * 2000)  # 4,000 words, 20,000 UTF-16 units
    async with Bot(BOT_TOKEN, base_url=telegram.base_url) as bot:
        message = Message.de_json(telegram.message(private(2), user(2), text="hi"), bot)
        await reply(message, text)
    sent = telegram.sent("sendMessage", refused=True)
    assert len(sent) >= 5 and not any(call.refused for call in sent)
    assert " ".join(call.text for call in sent).split() == text.split()


async def test_words_about_a_spoiler_photo_stay_hidden_in_every_piece_and_never_go_as_markdown(telegram) -> None:
    """A long reply about a spoiler photo is split: each piece carries its own spoiler entities, at the UTF-16
    offsets Telegram counts, and goes as plain text even where Markdown was asked for (Markdown would move the
    offsets, and its plain-text fallback would drop the spoilers)."""
    from telegram import Bot, Message

    from bot.adapter.sending import reply
    from tests.bot_helpers import behind_spoilers
    from tests.conftest import BOT_TOKEN
    from tests.fake_telegram import private, user

    description = " ".join(["🎨 a *secret_ word"] * 600)  # about 11,000 UTF-16 units, Markdown left open
    said = Said("Here it is: ") + Said.about(description, spoiler=True) + "\n\n(the end)"
    async with Bot(BOT_TOKEN, base_url=telegram.base_url) as bot:
        message = Message.de_json(telegram.message(private(3), user(3), text="hi"), bot)
        await reply(message, said, markdown=True)
    sent = telegram.sent("sendMessage", refused=True)
    assert len(sent) >= 3 and not any(call.refused or "parse_mode" in call.params for call in sent)
    assert " ".join(" ".join(behind_spoilers(call)) for call in sent).split() == description.split()
    assert sent[0].text.startswith("Here it is: ") and not behind_spoilers(sent[0])[0].startswith("Here")
    assert sent[-1].text.endswith("\n\n(the end)") and not behind_spoilers(sent[-1])[-1].endswith("end)")
