"""Replies in the reader's language: gettext catalogs (Babel) for English, Simplified Chinese, Russian and Spanish.

Messages are written in English in the source (the English text is the msgid) and looked up when said:

    _ = translator("ru")
    _("Saved.")                                    # a sentence
    _("Found {count} photos.", count=3)            # str.format names, filled in after the lookup
    _.plural("{n} photo", "{n} photos", n, n=n)    # a count: each language's own plural forms
    _.word("colour", "red")                        # a word in a context ("orange" the colour, not the fruit)
    NO_PHOTO = N_("I don't have a photo here.")    # a constant, marked here and translated where said: _(NO_PHOTO)
    say("It's {colour}.", colour=word("colour", "red"))  # a Phrase: said later, in whoever reads it's language

`say` and `word` make `Phrase`s, for code that cannot know the reader (the dialogue answers on the model
thread, possibly in another process): the core renders them once it knows who is asking.

Catalogs are clipchat/locale/<lang>/LC_MESSAGES/clipchat.po, read with Babel's `read_po` on first use, so
the repository and the wheel carry text files only and nothing needs compiling. After changing a marked
message, refresh the catalogs (babel.cfg names the files and the keywords above) and translate what is new:

    pybabel extract -F babel.cfg -o /tmp/clipchat.pot .
    pybabel update -i /tmp/clipchat.pot -d clipchat/locale -D clipchat

The test suite fails while any catalog lacks a marked message or changes its placeholders.
"""

from __future__ import annotations

import gettext
import io
import logging
import string
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

from babel import Locale, UnknownLocaleError
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import Translations

log = logging.getLogger(__name__)

DEFAULT = "en"  # the source language, and the reply language for everyone else
LANGUAGES = ("en", "ru", "es", "zh_Hans")  # what the catalogs cover
MODEL_LANGUAGE = "en"  # the default models caption, tag and answer in English; their words are not translated
DOMAIN = "clipchat"
LOCALE_DIR = Path(__file__).parent / "locale"


@lru_cache(maxsize=512)  # Telegram sends a few dozen tags; parsing each once is enough
def supported(code: str | None) -> str | None:
    """A language tag as Telegram sends it ("ru", "es-419", "zh-hans", "pt-br") or a person types it ("zh_Hans",
    "ES") as one of LANGUAGES; None when no catalog covers it. Any Chinese reads the Simplified catalog:
    closer to a Traditional reader than English."""
    if not code or not code.strip():
        return None
    try:
        locale = Locale.parse(code.strip().replace("-", "_"))
    except (ValueError, UnknownLocaleError):
        return None
    if locale.language == "zh":
        return "zh_Hans"
    return locale.language if locale.language in LANGUAGES else None


def choose(chat_setting: str | None, sender: str | None) -> str:
    """The reply language: the chat's own setting, else the sender's Telegram language, else English."""
    return supported(chat_setting) or supported(sender) or DEFAULT


def name_of(language: str, in_language: str | None = None) -> str:
    """ "русский", "español", "中文 (简体)": a language's own name, or its name in `in_language`."""
    name = Locale.parse(language).get_display_name(in_language or language) or language
    return name[:1].upper() + name[1:]


def N_(msgid: str) -> str:
    """Marks a constant for the catalogs; translate it where it is said, with `_(CONSTANT)`."""
    return msgid


@dataclass(frozen=True)
class Phrase:
    """A message and what fills its placeholders, put into words only when said, in the reader's language.

    Placeholders may hold other phrases (a colour's name inside "It's {colour}."), rendered in the same
    language; `str()` is the English text."""

    msgid: str
    params: tuple[tuple[str, Any], ...] = ()
    context: str | None = None

    def said_in(self, language: str) -> str:
        return translator(language).said(self)

    def __str__(self) -> str:
        return self.said_in(DEFAULT)


def say(msgid: str, /, **params: Any) -> Phrase:
    return Phrase(msgid, tuple(params.items()))


def word(context: str, msgid: str, /, **params: Any) -> Phrase:
    """A phrase whose meaning its context settles: word("colour", "orange")."""
    return Phrase(msgid, tuple(params.items()), context)


Said = str | Phrase | tuple["Said", ...]  # a tuple: parts said one after another


class Translator:
    """One language's catalog; calling it translates a message and fills in its placeholders."""

    def __init__(self, language: str, translations: gettext.NullTranslations) -> None:
        self.language = language
        self._translations = translations

    def __call__(self, msgid: str, /, **params: Any) -> str:
        if not msgid:  # gettext's "" is the catalog's header, never a message
            return msgid
        return self._filled(self._translations.gettext(msgid), msgid, params)

    def plural(self, singular: str, plural: str, n: int, /, **params: Any) -> str:
        english = singular if n == 1 else plural
        return self._filled(self._translations.ngettext(singular, plural, n), english, params)

    def word(self, context: str, msgid: str, /, **params: Any) -> str:
        return self._filled(self._translations.pgettext(context, msgid), msgid, params)

    def said(self, said: Said) -> str:
        """A phrase, plain text (the models' or the user's own words, said as they are), or parts of both."""
        if isinstance(said, Phrase):
            params = {
                name: self.said(value) if isinstance(value, Phrase | tuple) else value for name, value in said.params
            }
            found = (
                self._translations.pgettext(said.context, said.msgid)
                if said.context
                else self._translations.gettext(said.msgid)
            )
            return self._filled(found, said.msgid, params)
        if isinstance(said, tuple):
            return "".join(self.said(part) for part in said)
        return said

    def _filled(self, text: str, english: str, params: Mapping[str, Any]) -> str:
        if not params:
            return text
        try:
            return text.format(**params)
        except (KeyError, IndexError, ValueError) as error:  # a catalog's mistake: say it in English, not crash
            log.error("the %s translation of %r does not fit its placeholders: %s", self.language, english, error)
            return english.format(**params)


def translator(language: str | None) -> Translator:
    """The catalog of `language` (any tag `supported` reads), loaded once; English for anything else."""
    return _translator(supported(language) or DEFAULT)


@cache
def _translator(language: str) -> Translator:
    if language == DEFAULT:
        return Translator(language, gettext.NullTranslations())
    return Translator(language, _load(language))


def _load(language: str) -> Translations:
    path = LOCALE_DIR / language / "LC_MESSAGES" / f"{DOMAIN}.po"
    with path.open("rb") as po:
        catalog = read_po(po, locale=language, domain=DOMAIN)
    compiled = io.BytesIO()
    write_mo(compiled, catalog, use_fuzzy=False)  # a fuzzy entry is a guess: English until someone checks it
    compiled.seek(0)
    return Translations(compiled, domain=DOMAIN)


def english(said: Said) -> str:
    """What the bot says in its source language: logs, tests and the stored text of answers."""
    return translator(DEFAULT).said(said)


def placeholders(text: str) -> set[str]:
    """The names a message fills in: "{count} photos" -> {"count"}."""
    return {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}
