"""Answers that agree with the caption the user already has: where CLIP's grounded answer differs from it, the
answer says so ("I said a star; it could also be a cross"), and never silently contradicts it.

A constructed case (CLIP's scores given) needs no world; the count of silent contradictions is measured on the
world's held-out unseen combinations with its own models.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field

import numpy as np
import pytest
import torch

from clipchat.facts import PhotoFacts, Tag
from dialogue import Conversation, answer
from tests.conftest import attributes_named
from tests.world.scenes import COLOURS, SHAPES
from vision.models.tagger import Vocabulary

CAPTION = "a large yellow star on a gray background."
VOCABULARY = "[size]\nsmall\nlarge\n[colour]\nred\nyellow\ngray\n[shape]\ncircle\nstar\ncross\n"


@dataclass
class ScriptedTagger:
    """CLIP's zero-shot scores, given: each label's score (the rest share what is left)."""

    scores: dict[str, float]
    vocabulary: Vocabulary = field(default_factory=lambda: Vocabulary.parse(VOCABULARY))

    def classify(self, images: torch.Tensor, labels: list[str]) -> list[list[Tag]]:
        given = {label: self.scores.get(label, 0.0) for label in labels}
        rest = (1 - sum(given.values())) / max(1, sum(1 for score in given.values() if not score))
        ranked = [Tag(label, score or rest) for label, score in given.items()]
        return [sorted(ranked, key=lambda tag: tag.score, reverse=True) for _ in images]


@dataclass
class ScriptedEncoder:
    identity: str = "scripted"
    device: str = "cpu"


@dataclass
class ScriptedModels:
    tagger: ScriptedTagger
    encoder: ScriptedEncoder = field(default_factory=ScriptedEncoder)
    answerer: object = None


def asked(scores: dict[str, float], question: str):
    facts = PhotoFacts(CAPTION, (), np.ones(4, dtype=np.float32) / 2, "scripted")
    return answer(ScriptedModels(ScriptedTagger(scores)), Conversation(facts), question)


def test_clips_shape_that_differs_from_the_caption_is_said_beside_the_captions() -> None:
    """The issue's case: captioned a star, then "What shape is it?" got "It looks like a cross." (cross 0.54,
    star 0.43), contradicting the caption without a word."""
    reply = asked({"cross": 0.54, "star": 0.43}, "What shape is it?")
    assert reply.text == "I said a star; it could also be a cross.", reply.text
    assert reply.details["label"] == "star"  # the caption leads: CLIP is far from sure
    sure = asked({"cross": 0.97, "star": 0.01}, "What shape is it?")
    assert sure.text == "I said a star, but looking again, it looks more like a cross.", sure.text
    assert sure.details["label"] == "cross"
    assert asked({"star": 0.9, "cross": 0.05}, "What shape is it?").text == "It looks like a star."


def test_yes_and_no_follow_the_more_confident_source_and_name_both() -> None:
    there = asked({"cross": 0.54, "star": 0.43}, "Is there a star?")
    assert there.text.startswith("Yes") and "a star" in there.text and "a cross" in there.text, there.text
    other = asked({"cross": 0.54, "star": 0.43}, "Is there a cross?")
    assert other.text.startswith("No") and "I said a star" in other.text, other.text
    neither = asked({"cross": 0.54, "star": 0.43}, "Is there a circle?")
    assert neither.text.startswith("No, I don't see a circle.") and "I said a star" in neither.text, neither.text


def test_colour_and_count_that_differ_from_the_caption_say_so() -> None:
    colour = asked({"gray star": 0.6, "yellow star": 0.3}, "What colour is the star?")
    assert colour.text == "I said yellow; it could also be gray.", colour.text
    count = asked({"two stars": 0.5, "one star": 0.3}, "How many stars are there?")
    assert count.text == "I said one; it could also be two.", count.text


def silently_contradicts(caption: str, question: str, reply: str, attribute: str) -> bool:
    """Whether `reply` names a value of `attribute` other than the caption's without naming the caption's, or
    answers no about the caption's own value without saying that the caption named it."""
    named = attributes_named(caption)
    words = set(re.findall(r"[a-z]+", reply.lower()))
    if attribute == "count":
        values, said = {"one", "two", "three", "four", "five", "six"}, {"one"}
    else:
        said = {named[attribute], named[attribute] + "s", named[attribute] + "es"}
        values = set(COLOURS) if attribute == "colour" else {s + end for s in SHAPES for end in ("", "s", "es")}
    others = (words & values) - said
    denied = reply.startswith("No") and f"a {named['shape']}?" in question and "I said" not in reply
    return bool(others and not words & said) or denied


def plural(shape: str) -> str:
    return shape + ("es" if shape.endswith("s") else "s")


def test_no_grounded_answer_silently_contradicts_the_caption(world_models, heldout, figure) -> None:
    """Every grounded question kind (colour, what shape, is there, how many) about the world's unseen combinations,
    asked of the caption the models wrote for each."""
    rng = random.Random(0)
    unseen = [held for held in heldout if not held.seen]
    stored = world_models.describe([held.image for held in unseen])
    silent, asked_count, acknowledged = [], 0, 0
    for facts in stored:
        named = attributes_named(facts.caption)
        assert named, facts.caption
        shape = named["shape"]
        other = rng.choice([s for s in SHAPES if s != shape])
        questions = [
            ("colour", "What colour is it?"),
            ("colour", f"What colour is the {shape}?"),
            ("colour", f"Is the {shape} {rng.choice(sorted(COLOURS))}?"),
            ("shape", "What shape is it?"),
            ("shape", f"Is there a {shape}?"),
            ("shape", f"Is there a {other}?"),
            ("count", f"How many {plural(shape)} are there?"),
        ]
        for attribute, question in questions:
            reply = answer(world_models, Conversation(facts), question)
            assert reply.route in ("colour", "identify", "presence", "count"), (question, reply.route)
            asked_count += 1
            acknowledged += "I said" in reply.text
            if silently_contradicts(facts.caption, question, reply.text, attribute):
                silent.append((facts.caption, question, reply.text))
    figure(f"grounded answers silently contradicting the caption ({asked_count}, unseen combinations)", len(silent))
    figure(f"grounded answers naming the caption's value beside CLIP's ({asked_count}, unseen)", acknowledged)
    assert not silent, silent[:5]


@pytest.mark.parametrize(
    ("reply", "silent"),
    [
        ("It looks like a cross.", True),
        ("I said a star; it could also be a cross.", False),
        ("It looks like a star.", False),
        ("No, I don't see a star. It looks more like a cross.", True),
    ],
)
def test_the_judge_of_contradictions_reads_the_answers(reply: str, silent: bool) -> None:
    assert silently_contradicts(CAPTION, "Is there a star?", reply, "shape") == silent
