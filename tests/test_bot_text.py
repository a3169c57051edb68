"""What the bot's messages look like: splitting, alt text within Telegram's limits, Markdown fallback."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from bot.core.text import (
    ALT_TEXT_HEADER,
    CAPTION_LIMIT,
    describe,
    is_question,
    split_message,
    utf16_length,
    with_alt_text,
    without_mention,
)
from clipchat.facts import PhotoFacts, Tag


@given(st.text(alphabet=st.sampled_from("ab \n🎨"), min_size=0, max_size=12000))
def test_split_messages_fit_telegrams_limit_and_keep_every_word(text: str) -> None:
    pieces = split_message(text, limit=4096)
    assert all(0 < len(piece) <= 4096 for piece in pieces)
    assert "".join(pieces).split() == text.split()


def test_long_replies_are_cut_between_words() -> None:
    pieces = split_message(" ".join(["word"] * 2000), limit=4096)
    assert len(pieces) == 3 and all(not p.startswith(" ") and p.endswith("word") for p in pieces)


@given(st.text(max_size=1100), st.text(min_size=1, max_size=600))
def test_alt_text_keeps_the_authors_caption_and_fits_1024(author: str, description: str) -> None:
    caption = with_alt_text(author, description)
    if caption is None:
        assert utf16_length(author) > CAPTION_LIMIT - utf16_length(ALT_TEXT_HEADER) - 14
        return
    assert caption.startswith(author) and utf16_length(caption) <= CAPTION_LIMIT


def test_a_description_is_a_sentence_with_hashtags() -> None:
    facts = PhotoFacts("a red circle on grass", (Tag("red", 0.9), Tag("green grass", 0.5)), np.zeros(4), "clip")
    assert describe(facts) == "A red circle on grass.\nTags: #red, #green_grass"


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
