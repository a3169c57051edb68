"""Words the bot sends: descriptions, split replies and channel alt text. No Telegram objects here."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TypeVar

from clipchat.facts import PhotoFacts
from clipchat.i18n import DEFAULT, MODEL_LANGUAGE, N_, translator
from dialogue import Answer
from dialogue.describe import describe as _describe
from dialogue.describe import sentence

Span = tuple[int, int]  # [start, end) in characters of a Python string

MESSAGE_LIMIT = 4096  # Telegram's limit for one text message
CAPTION_LIMIT = 1024  # and for a photo's caption
ALT_TEXT_HEADER = N_("🖼 Image description: ")
ALT_TEXT_HEADER_IN_MODEL_LANGUAGE = N_("🖼 Image description (in English): ")  # for channels in another language
MODEL_LANGUAGE_NOTE = N_("(The description is in English: that's the only language my models write.)")
_QUESTION_START = re.compile(
    r"^(?:what|which|who|where|when|why|how|is|are|do|does|can|could|would|should|will|"
    r"tell me|describe)\b",
    re.IGNORECASE,
)


# What Telegram would show as a link in the bot's own message: a URL, a bare domain (example.com, t.me/x,
# пример.рф), an IP address, an address with a scheme of its own (tg:, mailto:) or an @username. Wider than Telegram's
# own list of top-level domains on purpose: a label like "st.louis" is refused too.
_LINK = re.compile(
    r"//|\b(?:tg|mailto|tel|callto|sms|javascript):|@\w|\b\d{1,3}(?:\.\d{1,3}){3}\b"
    r"|[^\W_](?:[\w-]*[^\W_])?\.(?:[^\W\d_]{2,}|xn--[\w-]+)(?![\w-])",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Said:
    """Words the bot sends, and the stretches of them that stay behind a spoiler: what it says about a photo
    its sender posted behind one. The adapter turns `hidden` into Telegram's spoiler entities (counted in
    UTF-16 there); here they are plain character offsets into `text`, in order and never overlapping."""

    text: str
    hidden: tuple[Span, ...] = ()

    @classmethod
    def about(cls, words: str, spoiler: bool) -> Said:
        """Words about one photo: all of them hidden when the photo is a spoiler."""
        return cls(words, ((0, len(words)),) if spoiler and words else ())

    def __add__(self, other: Said | str) -> Said:
        if isinstance(other, str):
            return Said(self.text + other, self.hidden)
        shift = len(self.text)
        return Said(self.text + other.text, self.hidden + tuple((a + shift, b + shift) for a, b in other.hidden))

    def __radd__(self, other: str) -> Said:
        return Said(other) + self

    def split(self, limit: int = MESSAGE_LIMIT) -> list[Said]:
        """`split_message`'s pieces, each with the part of `hidden` that falls in it."""
        return [
            Said(
                self.text[start:end],
                tuple((max(a, start) - start, min(b, end) - start) for a, b in self.hidden if a < end and b > start),
            )
            for start, end in piece_spans(self.text, limit)
        ]


Words = TypeVar("Words", str, Said)


def looks_like_link(words: str) -> bool:
    """`words` hold something Telegram would make a link (and maybe a preview) if the bot said it."""
    return _LINK.search(words) is not None


def describe(facts: PhotoFacts, tags: int = 5, language: str = DEFAULT, reads: bool = False) -> str:
    """'A red circle on grass.' plus its top tags, the way the bot answers a photo (and "what is this?"); a photo
    with text says so, offering /read when the answer model can read it (`reads`)."""
    return _describe(facts, tags, language, reads)


def noting_model_language(text: Words, language: str) -> Words:
    """A reply that quotes the models' own words (a caption, tags, a generated answer) says once, at its end,
    that they are in the models' language when the reader's is another."""
    if language == MODEL_LANGUAGE:
        return text
    return text + "\n\n" + translator(language)(MODEL_LANGUAGE_NOTE)


def spoken(answer: Answer, language: str, noted: bool = True) -> str:
    """A dialogue answer in the reader's language, noting it (unless the caller will) when it quotes the
    models' words in theirs."""
    said = translator(language).said(answer.said) if answer.said is not None else answer.text
    return noting_model_language(said, language) if noted and answer.quotes_models else said


def answered(answer: Answer, language: str, spoiler: bool) -> Said:
    """`spoken`, the answer itself behind a spoiler when it is about a spoiler photo (the note on its
    language, about the models, in plain sight)."""
    said = Said.about(spoken(answer, language, noted=False), spoiler)
    return noting_model_language(said, language) if answer.quotes_models else said


def alt_text(
    author_text: str, facts: PhotoFacts, limit: int = CAPTION_LIMIT, language: str = DEFAULT, spoiler: bool = False
) -> Said | None:
    """A channel post's new caption: the author's, then the photo's caption as one sentence (one full stop),
    that sentence behind a spoiler when the photo is behind one."""
    header = translator(language)(ALT_TEXT_HEADER if language == MODEL_LANGUAGE else ALT_TEXT_HEADER_IN_MODEL_LANGUAGE)
    caption = with_alt_text(author_text, sentence(facts.caption), limit, header)
    if caption is None:
        return None
    shown = len(_alt_text_lead(author_text, header))  # the author's words and the header stay in sight
    return Said(caption[:shown]) + Said.about(caption[shown:], spoiler)


def is_question(text: str) -> bool:
    text = text.strip()
    return text.endswith(("?", "？")) or bool(_QUESTION_START.match(text))


def without_mention(text: str, username: str | None) -> str:
    """'@clipchat_bot what is this?' -> 'what is this?'"""
    if username:
        text = re.sub(rf"@{re.escape(username)}\b", " ", text, flags=re.IGNORECASE)
    return " ".join(text.split()).strip(" ,:")


def split_message(text: str, limit: int = MESSAGE_LIMIT) -> list[str]:
    """Pieces of at most `limit` UTF-16 units (Telegram's count: an emoji is two), cut at paragraph, line
    or word boundaries where possible."""
    return [text[start:end] for start, end in piece_spans(text, limit)]


def piece_spans(text: str, limit: int = MESSAGE_LIMIT) -> list[Span]:
    """Where `split_message` cuts `text`: each piece's [start, end) in it, whitespace around pieces left out."""
    spans = []
    start, end = _skip_space(text, 0, len(text)), len(text.rstrip())
    while utf16_length(text[start:end]) > limit:
        window = _truncate_utf16(text[start:end], limit)  # the longest start of what is left within the limit
        cut = max(window.rfind("\n\n"), window.rfind("\n"), window.rfind(" "))
        if cut < len(window) // 2:  # no good boundary: cut hard rather than send a tiny piece
            cut = max(len(window), 1)  # at least one character, even one wider than the limit
        spans.append((start, start + len(text[start : start + cut].rstrip())))
        start = _skip_space(text, start + cut, end)
    if start < end:
        spans.append((start, end))
    return spans


def _skip_space(text: str, start: int, end: int) -> int:
    while start < end and text[start].isspace():
        start += 1
    return start


def utf16_length(text: str) -> int:
    """Telegram counts message lengths in UTF-16 code units (an emoji is two)."""
    return len(text.encode("utf-16-le")) // 2


def with_alt_text(
    author_text: str, description: str, limit: int = CAPTION_LIMIT, header: str = ALT_TEXT_HEADER
) -> str | None:
    """The author's caption, untouched, followed by the description, within `limit`; None if no room is left."""
    lead = _alt_text_lead(author_text, header)
    room = limit - utf16_length(lead)
    if room < 12:  # not even a few words fit: leave the post alone rather than mangle the author's text
        return None
    if utf16_length(description) > room:
        description = _truncate_utf16(description, room - 1).rstrip() + "…"
    return lead + description


def _alt_text_lead(author_text: str, header: str) -> str:
    """What comes before the description in a channel post's caption."""
    return author_text + ("\n\n" if author_text else "") + header


def _truncate_utf16(text: str, units: int) -> str:
    """The longest start of `text` within `units` UTF-16 units (never half a character)."""
    if utf16_length(text) <= units:
        return text
    encoded = text.encode("utf-16-le")[: 2 * units]
    return encoded.decode("utf-16-le", errors="ignore")  # a surrogate pair cut in two is dropped whole
