"""Answers CLIP can give by looking: colour, presence, what it is, how many.

Each compares the photo with a handful of candidate phrases (prompt-ensembled by
the model set's tagger) and phrases the winner as a sentence, hedged when CLIP
is unsure. Candidate lists come from the model set's vocabulary when it has a
section of that name (e.g. [colour], [shape]), else from the lists below.
"""

from __future__ import annotations

import torch

from clipchat.facts import Tag
from clipchat.i18n import Phrase, Said, english, say, word

from . import agreement
from .conversation import Answer, DialogueModels
from .routing import RouteKind

COLOURS = ("red", "orange", "yellow", "green", "blue", "purple", "pink", "brown", "black", "white", "gray")
CATEGORIES = {
    "animal": (
        "dog",
        "cat",
        "bird",
        "horse",
        "cow",
        "sheep",
        "rabbit",
        "fox",
        "bear",
        "deer",
        "elephant",
        "giraffe",
        "zebra",
        "lion",
        "tiger",
        "monkey",
        "fish",
        "turtle",
        "frog",
        "snake",
        "duck",
        "chicken",
        "butterfly",
    ),
    "place": (
        "beach",
        "forest",
        "mountain",
        "city street",
        "park",
        "kitchen",
        "living room",
        "bedroom",
        "office",
        "restaurant",
        "desert",
        "lake",
        "river",
        "farm",
        "garden",
        "airport",
        "station",
        "stadium",
        "shop",
    ),
    "food": (
        "pizza",
        "burger",
        "sandwich",
        "salad",
        "soup",
        "pasta",
        "sushi",
        "cake",
        "ice cream",
        "fruit",
        "bread",
        "steak",
        "noodles",
        "rice",
        "breakfast",
        "dessert",
    ),
    "vehicle": ("car", "truck", "bus", "motorcycle", "bicycle", "train", "airplane", "boat", "ship", "tram", "scooter"),
}
NUMBERS = ("one", "two", "three", "four", "five", "six")
UNSURE = 0.5  # below this probability an answer says it is a guess
# The built-in colours and counts as the catalogs translate them; a model set's own colour words stay as they are.
COLOUR_NAMES = {
    name.msgid: name
    for name in (
        word("colour", "red"),
        word("colour", "orange"),
        word("colour", "yellow"),
        word("colour", "green"),
        word("colour", "blue"),
        word("colour", "purple"),
        word("colour", "pink"),
        word("colour", "brown"),
        word("colour", "black"),
        word("colour", "white"),
        word("colour", "gray"),
        word("colour", "grey"),
    )
}
NUMBER_NAMES = {
    name.msgid: name
    for name in (
        word("count", "one"),
        word("count", "two"),
        word("count", "three"),
        word("count", "four"),
        word("count", "five"),
        word("count", "six"),
    )
}


def candidate_labels(models: DialogueModels, category: str) -> tuple[str, ...] | None:
    """The model set's own vocabulary section for `category`, if it has one, else a built-in list."""
    names = {category, category + "s", "color" if category == "colour" else category}
    for name, labels in models.tagger.vocabulary.sections:
        if name.lower() in names:
            return labels
    if category == "colour":
        return COLOURS
    if category in ("object", "thing"):
        return tuple(models.tagger.vocabulary.labels)
    return CATEGORIES.get(category)


def _best(models: DialogueModels, image: torch.Tensor, labels: list[str]) -> list[Tag]:
    return models.tagger.classify(image[None], labels)[0]


def answer_colour(models: DialogueModels, image: torch.Tensor, subject: str | None, caption: str = "") -> Answer:
    colours = candidate_labels(models, "colour") or COLOURS
    labels = [f"{c} {subject}" if subject else c for c in colours]
    ranked = [Tag(colours[labels.index(tag.label)], tag.score) for tag in _best(models, image, labels)]
    colour = ranked[0].label
    name = COLOUR_NAMES.get(colour, colour)
    sure = ranked[0].score >= UNSURE
    disagreed = agreement.disagreement(ranked, agreement.caption_label(caption, colours, subject))
    if disagreed:
        said: Said = agreement.both(
            disagreed,
            COLOUR_NAMES.get(disagreed.said, disagreed.said),
            COLOUR_NAMES.get(disagreed.seen, disagreed.seen),
        )
        details = {"colour": disagreed.followed, "caption": disagreed.said}
        return Answer(english(said), RouteKind.COLOUR, ranked[0].score, details, said)
    if sure and subject:
        said = say("The {subject} is {colour}.", subject=subject, colour=name)
    elif sure:
        said = say("It's {colour}.", colour=name)
    elif subject:
        said = say("The {subject} is probably {colour}, but I'm not sure.", subject=subject, colour=name)
    else:
        said = say("It's probably {colour}, but I'm not sure.", colour=name)
    return Answer(english(said), RouteKind.COLOUR, ranked[0].score, {"colour": colour}, said)


def answer_presence(models: DialogueModels, image: torch.Tensor, subject: str, caption: str = "") -> Answer:
    thing = singular(subject)
    section = next((labels for _, labels in models.tagger.vocabulary.sections if thing in labels), None)
    labels = (
        list(section) if section else [thing, *[label for label in models.tagger.vocabulary.labels if label != thing]]
    )
    ranked = _best(models, image, labels)
    # Within a section only one label wins; against a whole vocabulary, a thing among the top three is there.
    top = ranked[:1] if section else ranked[:3]
    present = any(t.label == thing for t in top)
    score = next(t.score for t in ranked if t.label == thing)
    said_label = agreement.caption_label(caption, section) if section else None
    disagreed = agreement.disagreement(ranked, said_label)
    if disagreed:
        pair = article(disagreed.said), article(disagreed.seen)
        said: Said
        if thing in (disagreed.said, disagreed.seen):
            present, said = agreement.presence(disagreed, thing == disagreed.said, *pair)
        else:  # neither names it: no, and the caption's value beside CLIP's
            no = say("No, I don't see {thing}.", thing=article(thing))
            present, said = False, (no, " ", agreement.both(disagreed, *pair))
        details = {"present": present, "caption": disagreed.said, "instead": disagreed.followed}
        return Answer(english(said), RouteKind.PRESENCE, score if present else 1 - score, details, said)
    if present:
        said = say("Yes, I can see {thing}.", thing=article(thing))
        return Answer(english(said), RouteKind.PRESENCE, score, {"present": True}, said)
    said = say(
        "No, I don't see {thing}. It looks more like {other}.", thing=article(thing), other=article(ranked[0].label)
    )
    return Answer(english(said), RouteKind.PRESENCE, 1 - score, {"present": False, "instead": ranked[0].label}, said)


def answer_identify(models: DialogueModels, image: torch.Tensor, category: str, caption: str = "") -> Answer | None:
    labels = candidate_labels(models, category)
    if not labels:
        return None
    ranked = _best(models, image, list(labels))
    best = ranked[0]
    disagreed = agreement.disagreement(ranked, agreement.caption_label(caption, labels))
    if disagreed:
        said = agreement.both(disagreed, article(disagreed.said), article(disagreed.seen))
        details = {"label": disagreed.followed, "caption": disagreed.said}
        return Answer(english(said), RouteKind.IDENTIFY, best.score, details, said)
    if best.score >= UNSURE:
        said = say("It looks like {thing}.", thing=article(best.label))
    else:
        said = say(
            "I think it's {thing}, though it could also be {other}.",
            thing=article(best.label),
            other=article(ranked[1].label),
        )
    return Answer(english(said), RouteKind.IDENTIFY, best.score, {"label": best.label}, said)


def answer_count(models: DialogueModels, image: torch.Tensor, subject: str, caption: str = "") -> Answer:
    plural = subject if subject.endswith("s") else subject + "s"
    labels = [f"{n} {singular(subject) if n == 'one' else plural}" for n in NUMBERS]
    ranked = _best(models, image, labels)
    number = ranked[0].label.split()[0]
    counted = agreement.caption_count(caption, singular(subject))
    numbers = [Tag(tag.label.split()[0], tag.score) for tag in ranked]
    said_number = NUMBERS[counted - 1] if counted and counted <= len(NUMBERS) else None
    disagreed = agreement.disagreement(numbers, said_number)
    if disagreed:
        said = agreement.both(disagreed, NUMBER_NAMES[disagreed.said], NUMBER_NAMES[disagreed.seen])
        details = {"count": NUMBERS.index(disagreed.followed) + 1, "caption": NUMBERS.index(disagreed.said) + 1}
        return Answer(english(said), RouteKind.COUNT, ranked[0].score, details, said)
    if ranked[0].score >= UNSURE:
        said = say("I count {number}.", number=NUMBER_NAMES[number])
    else:
        said = say("I count {number}. I'm not certain about that count.", number=NUMBER_NAMES[number])
    return Answer(english(said), RouteKind.COUNT, ranked[0].score, {"count": NUMBERS.index(number) + 1}, said)


def singular(noun: str) -> str:
    if noun.endswith("ies"):
        return noun[:-3] + "y"
    if noun.endswith(("ches", "shes", "xes", "sses")):
        return noun[:-2]
    if noun.endswith("s") and not noun.endswith("ss"):
        return noun[:-1]
    return noun


def article(noun: str) -> Phrase:
    """'a dog', 'an owl': English wants an article; other languages say the label (a model's word) as it is."""
    if noun[:1].lower() in "aeiou":
        return word("a thing", "an {label}", label=noun)
    return word("a thing", "a {label}", label=noun)
