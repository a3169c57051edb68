"""Answers that agree with the caption the user already has, or say where they differ.

The caption was written when the photo arrived; a follow-up ("what shape is it?") is answered by CLIP's
zero-shot labels, which may rank another value first. Then the answer names both: the caption's value first
("I said a star; it could also be a cross"), or CLIP's when CLIP is sure and all but rules the caption's out.
It never names another value as if the caption had not said one.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from clipchat.facts import Tag
from clipchat.i18n import Phrase, Said, say

# CLIP is the more confident source when its choice has at least SURE and the caption's value at most RULED_OUT.
SURE = 0.9
RULED_OUT = 0.02
NEAR = 3  # words between an attribute and the thing it describes: "yellow" in "a large yellow star"
_COUNT_WORDS = {"a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6}


@dataclass(frozen=True)
class Disagreement:
    said: str  # the caption's value (a label)
    seen: str  # CLIP's
    clip_first: bool  # CLIP is the more confident source: its value leads

    @property
    def followed(self) -> str:
        """The value the answer goes by."""
        return self.seen if self.clip_first else self.said


def _words(text: str) -> list[str]:
    return re.findall(r"[\w'-]+", text.lower())


def _at(words: list[str], label: str) -> list[int]:
    """Where `label` (possibly several words, possibly plural) starts among `words`."""
    parts = label.lower().split()
    found = []
    for start in range(len(words) - len(parts) + 1):
        window = words[start : start + len(parts)]
        *body, last = window
        if body == parts[:-1] and last in (parts[-1], parts[-1] + "s", parts[-1] + "es"):
            found.append(start)
    return found


def caption_label(caption: str, labels: Sequence[str], subject: str | None = None) -> str | None:
    """The one of `labels` the caption names: the first it names, or with `subject`, the one just before the
    subject ("yellow" for "star" in "a large yellow star on a gray background"); None when it names none, or
    does not mention the subject at all."""
    words = _words(caption)
    places = sorted((start, label) for label in labels for start in _at(words, label))
    if subject is None:
        return places[0][1] if places else None
    things = _at(words, subject.split()[-1]) if subject.split() else []
    for thing in things:
        before = [label for start, label in places if thing - NEAR <= start < thing]
        if before:
            return before[-1]
    return None


def caption_count(caption: str, subject: str) -> int | None:
    """How many of `subject` the caption says there are ("a star": one), or None when it does not say."""
    words = _words(caption)
    for thing in _at(words, subject):
        for start in range(thing - 1, max(thing - NEAR, 0) - 1, -1):
            if words[start] in _COUNT_WORDS:
                return _COUNT_WORDS[words[start]]
    return None


def disagreement(ranked: Sequence[Tag], said: str | None) -> Disagreement | None:
    """How CLIP's ranking (best first) differs from the caption's value `said`, or None when it does not."""
    if said is None or not ranked or ranked[0].label == said:
        return None
    caption_score = next((tag.score for tag in ranked if tag.label == said), None)
    if caption_score is None:  # the caption's value was not among the choices: nothing to weigh it against
        return None
    clip_first = ranked[0].score >= SURE and caption_score <= RULED_OUT
    return Disagreement(said, ranked[0].label, clip_first)


def both(disagreed: Disagreement, said: Said | Phrase, seen: Said | Phrase) -> Phrase:
    """The answer naming both values, the more confident source's first."""
    if disagreed.clip_first:
        return say("I said {said}, but looking again, it looks more like {seen}.", said=said, seen=seen)
    return say("I said {said}; it could also be {seen}.", said=said, seen=seen)


def presence(disagreed: Disagreement, asked_about_said: bool, said: Phrase, seen: Phrase) -> tuple[bool, Phrase]:
    """Whether the thing asked about is there, by the source the answer follows, and the yes or no naming both
    values: "Yes, I said a star, though it could also be a cross."."""
    yes = asked_about_said != disagreed.clip_first  # the caption's value asked about, and the caption followed
    if yes and not disagreed.clip_first:
        return yes, say("Yes, I said {said}, though it could also be {seen}.", said=said, seen=seen)
    if yes:
        return yes, say("Yes: I said {said}, but looking again, it looks more like {seen}.", said=said, seen=seen)
    if disagreed.clip_first:
        return yes, say("No: I said {said}, but looking again, it looks more like {seen}.", said=said, seen=seen)
    return yes, say("No, I said {said}, though it could also be {seen}.", said=said, seen=seen)
