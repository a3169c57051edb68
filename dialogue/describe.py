"""The photo as a whole: "what is this?" answered with what was seen when the photo arrived.

The caption and tags were made for this photo already, so the answer needs no model at all
and says exactly what the bot's own description of the photo says.
"""

from __future__ import annotations

import re

from clipchat.facts import PhotoFacts
from clipchat.i18n import N_, Said, english, say, translator

from .conversation import Answer
from .routing import RouteKind


def sentence(caption: str) -> str:
    """'a red circle on grass' -> 'A red circle on grass.': capitalised, ending in exactly one full stop
    (or the caption's own ! ? …), so a caption that already ends in one does not get a second."""
    text = " ".join(caption.split())
    text = re.sub(r"\s+([.!?…])$", r"\1", text)  # "on grass ." as some captioners tokenise it
    text = re.sub(r"(?<!\.)\.\.$", ".", text)  # a stray second full stop, but not an ellipsis "..."
    if not text:
        return ""
    text = text[:1].upper() + text[1:]  # not str.capitalize(): that would lower-case "Paris"
    return text if text.endswith((".", "!", "?", "…")) else text + "."


def described(facts: PhotoFacts, tags: int = 5, reads: bool = False) -> Said:
    """'A red circle on grass.' and a line of its top tags, the way the bot answers a photo; the caption and
    tags are the models' words, only "Tags:" is said in the reader's language. A photo CLIP finds text in says
    so, offering /read where the answer model can read it (`reads`)."""
    said: Said = sentence(facts.caption)
    labels = [_hashtag(label) for label in facts.labels[:tags]]
    if labels := [label for label in labels if label]:
        said = said, "\n", say("Tags: {tags}", tags=", ".join(f"#{label}" for label in labels))
    if facts.shows_text:
        said = said, "\n", say(HAS_TEXT_READ if reads else HAS_TEXT)
    return said


def describe(facts: PhotoFacts, tags: int = 5, language: str | None = None, reads: bool = False) -> str:
    return translator(language).said(described(facts, tags, reads))


HAS_TEXT = N_("There is text in it.")
HAS_TEXT_READ = N_("There is text in it: /read reads it.")


def answer_describe(facts: PhotoFacts) -> Answer:
    said = described(facts)
    return Answer(english(said), RouteKind.DESCRIBE, 1.0, {"caption": facts.caption, "tags": facts.labels[:5]}, said)


def _hashtag(label: str) -> str:
    return re.sub(r"\W+", "_", label.strip()).strip("_").lower()
