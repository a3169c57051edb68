"""Questions about an album as a whole, and photos of it named by position.

After an album, "which one is red?", "how many are stars?", "which is the biggest?" and "compare them" are
asked across its photos; "what is in the second one?", "photo 3" and "the last" pick one photo, which then stays
under discussion. Only asked when the photo under discussion is one of an album's (`Conversation.album`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .routing import PHOTO
from .tidying import tidy

ORDINALS = ("first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth", "tenth")
_SUFFIXED = re.compile(r"^(\d+)(?:st|nd|rd|th)$")
_ORDINAL = "|".join((*ORDINALS, "last", r"\d+(?:st|nd|rd|th)"))
# "the second one", "the 2nd photo", "the last", "photo 3", "number 2", "#2": where the album photo is named
_PICKED = re.compile(
    rf"(?:\b(?:the |this |that )?(?P<ordinal>{_ORDINAL})(?: (?:one|{PHOTO}|{PHOTO}s?))?\b"
    rf"|(?:\b(?:{PHOTO}|number|no)|#) ?(?P<number>\d+)\b)"
)
_THEM = r"(?:them|these|those|they|the (?:photos|pictures|images|pics)|the album|all|both|each)"
_PHOTOS = r"(?:ones?|photos?|pictures?|images?|pics?|of them|of these|of those|of the (?:photos|pictures|images))"
_HAS = r"(?:is|are|has|have|shows?|contains?|features?)"
_WHICH = [
    re.compile(rf"^which (?:{_PHOTOS} )?(?:{_PHOTOS} )?{_HAS} (?P<value>.+)$"),
    re.compile(rf"^what {_PHOTOS} (?:{_PHOTOS} )?{_HAS} (?P<value>.+)$"),
    re.compile(r"^in which (?:one|photo|picture|image) (?:is|are) (?:there )?(?P<value>.+)$"),
    re.compile(r"^where (?:is|are) (?P<value>the .+)$"),  # "where is the star?"
]
_HOW_MANY = [
    re.compile(
        rf"^how many (?:{_PHOTOS} )?(?:{_PHOTOS} )?(?:are|is|have|has|show|contain|feature)? ?(?P<value>.*?)"
        rf"(?: (?:are|is) (?:there|shown|in (?:them|the album)))?(?: do you see)?$"
    ),
]
_COMPARE = [
    re.compile(rf"^(?:compare|contrast|describe|caption|summari[sz]e)(?: (?:{_THEM}|them all|all of them))?$"),
    re.compile(r"^(?:compare|contrast)\b"),
    re.compile(r"^what (?:is|are) the (?:differences?|similarit(?:y|ies))\b"),
    re.compile(rf"^how (?:are|do|does) (?:{_THEM}) (?:differ|compare|different)\b"),
    re.compile(rf"^what (?:do|does) (?:{_THEM}) have in common$"),
    re.compile(rf"^(?:are|do) (?:{_THEM}) (?:the same|different|alike|similar|look alike|differ)\b"),
    re.compile(rf"^what (?:are|is (?:in|on)) (?:{_THEM})(?: photos| pictures)?$"),
    re.compile(rf"^what do (?:{_THEM}) show$"),
]
_PHOTO_COUNT = re.compile(rf"^how many (?:{PHOTO}s?|ones?)(?: (?:are|is) there| did i send)?$")


class AlbumAsk:
    """What an album question asks; `value` is what "which one is …" names, in the user's words."""


@dataclass(frozen=True)
class Which(AlbumAsk):
    value: str  # "red", "stars", "the biggest"


@dataclass(frozen=True)
class HowMany(AlbumAsk):
    value: str  # "" for the photos themselves


@dataclass(frozen=True)
class Compare(AlbumAsk):
    pass


@dataclass(frozen=True)
class Picked:
    """One photo named by position (0-based, possibly past the album's end) and the question left about it."""

    position: int
    rest: str  # "what colour is it"; "" when the question was only the photo's name ("and the second one?")


def picked(question: str, photos: int) -> Picked | None:
    """The album photo `question` names by position ("the second one", "photo 3", "the last"), if any."""
    text = tidy(question)
    match = _PICKED.search(text)
    if match is None:
        return None
    if match.group("ordinal"):
        named = match.group("ordinal")
        suffixed = _SUFFIXED.match(named)
        position = photos - 1 if named == "last" else int(suffixed.group(1)) - 1 if suffixed else ORDINALS.index(named)
    else:
        position = int(match.group("number")) - 1
    rest = " ".join(f"{text[: match.start()]} it {text[match.end() :]}".split())
    if re.fullmatch(r"(?:(?:and|what about|how about|show me|look at|tell me about|about) )?it", rest):
        rest = ""
    return Picked(max(position, 0), rest)


def asked(question: str) -> AlbumAsk | None:
    """The question across the album's photos that `question` asks, if it asks one."""
    text = tidy(question)
    if _PHOTO_COUNT.match(text):
        return HowMany("")
    if any(pattern.search(text) for pattern in _COMPARE):
        return Compare()
    for pattern in _HOW_MANY:
        if match := pattern.match(text):
            return HowMany(match.group("value").strip())
    for pattern in _WHICH:
        if match := pattern.match(text):
            return Which(match.group("value").strip())
    return None
