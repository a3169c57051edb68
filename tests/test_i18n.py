"""The bot speaks its readers' languages: every marked message is in every catalog, Telegram's language tags
pick the right one, and end to end a Russian, a Spanish group and a French (unsupported) reader each get
the fixed words in theirs, while the models' captions stay English and say so."""

from __future__ import annotations

from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po

from clipchat.i18n import LANGUAGES, LOCALE_DIR, choose, placeholders, say, supported, translator, word
from tests.bot_helpers import send_photo, send_text
from tests.fake_telegram import USERNAME, group, private, user

ROOT = Path(__file__).resolve().parents[1]
TRANSLATED = [language for language in LANGUAGES if language != "en"]


def marked_messages() -> list[tuple[str | None, str | tuple[str, str], str]]:
    """(context, message, where) for every message babel.cfg's keywords mark in the source."""
    with (ROOT / "babel.cfg").open() as config:
        method_map, options_map = parse_mapping_cfg(config)
    return [
        (context, message, f"{filename}:{line}")
        for filename, line, message, _, context in extract_from_dir(str(ROOT), method_map, options_map)
    ]


@pytest.fixture(scope="module")
def marked():
    found = marked_messages()
    assert len(found) > 100  # the extraction found the source (a wrong babel.cfg would find nothing)
    return found


@pytest.mark.parametrize("language", TRANSLATED)
def test_every_marked_message_has_a_checked_translation_with_the_same_placeholders(language: str, marked) -> None:
    with (LOCALE_DIR / language / "LC_MESSAGES" / "clipchat.po").open("rb") as po:
        catalog = read_po(po)
    problems = []
    for context, message, where in marked:
        singular, plural = (message, None) if isinstance(message, str) else message
        entry = catalog.get(singular, context)
        forms = () if entry is None else (entry.string,) if isinstance(entry.string, str) else entry.string
        wanted = placeholders(singular) | placeholders(plural or "")
        if entry is None or entry.fuzzy or not forms or not all(forms):
            problems.append(f"{where}: {singular!r} is {'fuzzy' if entry and entry.fuzzy else 'not translated'}")
        elif plural is not None and len(forms) != catalog.num_plurals:
            problems.append(f"{where}: {singular!r} has {len(forms)} plural forms, not {catalog.num_plurals}")
        elif any(placeholders(form) != wanted for form in forms):
            problems.append(f"{where}: {singular!r} translated with other placeholders than {sorted(wanted)}")
    assert not problems, f"{language} catalog (refresh it with the commands in babel.cfg):\n" + "\n".join(problems)


def test_telegram_language_tags_reach_the_catalog_that_covers_them() -> None:
    assert [supported(tag) for tag in ("ru", "RU", "es-419", "zh-hans", "zh", "zh-hant", "zh_Hans", "en-GB")] == [
        "ru",
        "ru",
        "es",
        "zh_Hans",
        "zh_Hans",
        "zh_Hans",
        "zh_Hans",
        "en",
    ]
    assert [supported(tag) for tag in ("fr", "pt-br", "xx", "", None)] == [None] * 5
    assert choose("es", "ru") == "es" and choose(None, "ru") == "ru" and choose(None, "fr") == "en"
    assert choose("auto", "fr") == "en"  # nothing usable: English


def test_phrases_are_said_in_the_readers_language_and_mean_english_otherwise() -> None:
    colour = say("It's {colour}.", colour=word("colour", "red"))
    assert str(colour) == "It's red." and colour.said_in("fr") == "It's red."
    assert colour.said_in("ru") == "Цвет: красный." and colour.said_in("zh-hans") == "它是红色的。"
    assert translator("ru").plural("{count} photo:", "{count} photos:", 3, count=3) == "3 фото:"
    assert translator("es").plural("{count} photo:", "{count} photos:", 1, count=1) == "1 foto:"
    assert translator("es")("") == ""  # an empty message says nothing (gettext's "" would be the catalog header)


def test_an_error_is_said_in_the_readers_language_with_its_numbers_filled_in() -> None:
    from clipchat.errors import BadImage
    from vision import ImageLimits, load_image

    with pytest.raises(BadImage) as caught:
        load_image(b"x" * (2 * 1024 * 1024 + 1), ImageLimits(max_bytes=2 * 1024 * 1024))
    assert caught.value.user_message == "That file is too big for me: please send an image under 2 MB."
    assert caught.value.said_in("es") == "Ese archivo es demasiado grande para mí: envía una imagen de menos de 2 MB."


def note(language: str) -> str:
    from bot.core.text import MODEL_LANGUAGE_NOTE

    return translator(language)(MODEL_LANGUAGE_NOTE)


async def test_each_reader_hears_the_bot_in_their_language_and_the_captions_stay_english(
    start_bot, telegram, world_models, understood
):
    from tests.test_bot import caption_of

    await start_bot()
    menus = {call.params.get("language_code"): call.params["commands"] for call in telegram.sent("setMyCommands")}
    assert {"ru", "es", "zh"} <= set(menus)
    assert {c["command"]: c["description"] for c in menus["ru"]}["help"] == "Что я умею"

    # A Russian reader: the fixed words in Russian, the caption in English with a note saying so, once.
    ivan, held = user(51, "ru"), understood[0]
    send_photo(telegram, private(51), ivan, held.image)
    [described] = await telegram.wait_replies(51, 1)
    caption = caption_of(world_models, held.image)
    assert caption.lower() in described.text.lower() and "Теги: #" in described.text and "Tags" not in described.text
    assert described.text.count(note("ru")) == 1
    send_text(telegram, private(51), ivan, "Что это?")  # the describe intent, asked in Russian
    answer = (await telegram.wait_replies(51, 2))[-1]
    assert answer.text.lower().startswith(caption.lower().rstrip(".")) and "Теги: #" in answer.text
    assert answer.text.count(note("ru")) == 1
    send_text(telegram, private(51), ivan, "Какого цвета?")  # the colour intent: a colour named in Russian
    colour = (await telegram.wait_replies(51, 3))[-1]
    assert any(
        translator("ru").word("colour", name) in colour.text
        for name in ("red", "green", "blue", "yellow", "purple", "orange", "white", "black", "gray")
    )
    telegram.push({"message": telegram.message(private(51), ivan, document=telegram.add_file(b"not a picture"))})
    refused = (await telegram.wait_replies(51, 4))[-1]  # an error the models raise, said in Russian too
    assert refused.text.startswith("Я умею смотреть только изображения"), refused.text

    # A group whose admin chose Spanish: everyone there hears Spanish, whatever their own app speaks.
    room, admin, member = group(-100800), user(61, "en"), user(62, "ru")
    telegram.admins[room["id"]] = {admin["id"]}
    send_text(telegram, room, admin, "/settings language fr")
    assert (await telegram.wait_replies(room["id"], 1))[-1].text.startswith("I can't speak fr yet.")
    send_text(telegram, room, admin, "/settings language es")
    assert (await telegram.wait_replies(room["id"], 2))[-1].text.startswith("Guardado.")
    send_photo(telegram, room, member, understood[1].image, caption=f"@{USERNAME}")
    spanish = (await telegram.wait_replies(room["id"], 3))[-1]
    assert "Etiquetas: #" in spanish.text and spanish.text.count(note("es")) == 1

    # A language without a catalog falls back to English, which the captions are in already: no note.
    pierre = user(71, "fr")
    send_photo(telegram, private(71), pierre, understood[2].image)
    [english] = await telegram.wait_replies(71, 1)
    assert "Tags: #" in english.text and "English" not in english.text
    # In a private chat its person chooses the language; `auto` gives the choice back to their app.
    send_text(telegram, private(71), pierre, "/settings language zh")
    send_text(telegram, private(71), pierre, "/tags")
    chinese = (await telegram.wait_replies(71, 3))[-1]
    assert chinese.text.endswith(note("zh_Hans"))
    send_text(telegram, private(71), pierre, "/settings language auto")
    send_text(telegram, private(71), pierre, "what is this?")
    assert "Tags: #" in (await telegram.wait_replies(71, 5))[-1].text
