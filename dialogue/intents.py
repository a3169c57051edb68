"""Routing's learned fallback: a question no pattern matches goes to the route whose example phrasings it is near.

    route_question("would you mind telling me what I'm looking at?")  # Route(describe), by the fallback

The space is the question's frame: its words and word pairs weighted by how rare they are among the
prototypes (`prototypes.PROTOTYPES`), a word the prototypes never use standing as the slot X, so
"what shade is the umbrella" is compared as "what shade is the X". With a CLIP whose text tower tells the
prototypes' routes apart (`clip_view`, checked once per loaded model and cached), CLIP's similarity is
averaged in. A route is taken only when the text asks something (`asks`: not "It is red."), its nearest
prototype is near enough, nearer by a margin than any other route's, and a word of the question is mostly that
route's. Where the prototypes leave a question open, a classifier learned from labelled questions
(`classifier`, trained on first use on `data/intents.jsonl` and the prototypes, in about half a second) takes it
when it is sure (`TRUSTED`); else the question stays open, for the language model. A route that needs a subject ("count the
circles") takes it from the question; when none is found the question stays open too.
"""

from __future__ import annotations

import difflib
import itertools
import json
import logging
import math
import re
import threading
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources

import torch
import torch.nn.functional as F

from vision.models.encoder import TextEncoder

from .classifier import TextClassifier
from .prototypes import PROTOTYPES
from .routing import (
    ADVICE,
    CATEGORIES,
    COLOURS,
    MOODS,
    NO_SUBJECT,
    PHOTO,
    SAME_CATEGORY,
    Route,
    RouteKind,
    pattern_route,
)
from .tidying import tidy

log = logging.getLogger(__name__)

SLOT = "x"  # the prototypes' X: whatever a question names
NEAR_ENOUGH = 0.45  # the nearest prototype's similarity a route needs ...
MARGIN = 0.08  # ... and how much nearer it must be than the nearest of any other route
POINTS = 0.6  # ... and a word that mostly that route's prototypes use (describe: that, or "what")
CLIP_TRUSTED = 0.9  # the share of prototypes whose nearest other prototype, in CLIP's space, has their route
_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)?")
_CLASSES = {colour: "<colour>" for colour in COLOURS} | {mood: "<mood>" for mood in MOODS}
_PHOTOS = re.compile(rf"^{PHOTO}s?$")
# Words after which a thing is named: "the circles", "a dog", "how many birds", "the number of cars"
_INTRODUCERS = {"a", "an", "the", "any", "some", "all", "this", "that", "these", "those", "of", "many"}
_INTRODUCERS |= {"my", "its", "his", "her", "their", "your"}
_ASKING = {"what", "which", "this", "that", "these", "those", "identify", "name"}
_PLACES = {"place", "location"}  # never a thing in the photo: "guess the location" asks for one
_NAMING = {"name", "identify", "guess"}  # "name the plant"
_KINDS = {"kind", "sort", "type", "breed", "species", "make", "model"}
_HEDGED = re.compile(r"^\w+(?: \w+)*? (?:a|an) (\w+(?: \w+)?)$")  # words before the article that names it
_CLAUSES = re.compile(r"\s*[,;:\u2013\u2014]\s*|\s+-\s+")
_ASKED = re.compile(r"\b(?:what|which|how|where|who|whether|if|why|when)\b")  # where an indirect question starts
# an indirect question's order, "what breed this dog is", "which city it was", "what this photo is of"
_INDIRECT = re.compile(
    r"^(?P<asked>(?:what|which)(?: \w+)??) (?P<thing>it|this|that|these|those|they|"
    r"(?:the|this|that|these|those|its|his|her|their)(?: \w+){1,3}?) (?P<verb>is|are|was|were|(?:could|might|would|may) be)(?P<tail> of| about)?$"
)
# a yes/no question's indirect order: "(tell me) if this image is depressing", "whether there is a cat"
_WHETHER = re.compile(
    r"^(?:if|whether) (?P<thing>it|this|that|there|(?:the|this|that|these|those|its|his|her|their)(?: \w+){1,3}?) "
    r"(?P<verb>is|are|was|were) (?P<rest>.+)$"
)
_OPINION = re.compile(  # "what breed would you say the dog is": "what breed the dog is"
    r"^(?P<asked>(?:what|which|where|how many)(?: \w+)??) (?:would|do|did|could|will) you (?:say|think|guess|reckon)\b"
)
_INDIRECT_DOES = re.compile(  # "what the sign says": "what does the sign say"
    r"^what (?P<thing>it|this|that|(?:the|this|that|its|his|her|their)(?: \w+){1,3}?) (?P<verb>say|read|show|mean)s$"
)
_WHAT = re.compile(r"\b(?:what|which)\b")  # "what is this?" has no word of describe's own
_REQUEST = re.compile(
    r"^(?:(?:could|can|would|will) you|tell me|let me know|do you know|any idea|i'?d like|i would like|i want|"
    r"i'?m wondering|i am wondering|i wonder|i'?m curious|i am curious|i need|i'?d love|i'?d appreciate|help me|"
    r"mind)\b|\b(?:please|pls|plz)\b"
)
# where a request starts after a lead-in: "I'd be grateful if you could describe the picture", "do you mind
# describing this" (`tidy` spells the -ing form as the verb)
_REQUESTED = re.compile(
    r"\b(?:describe|explain|summari[sz]e|caption|count|transcribe)\b|\bthe (?:colou?rs?|number) of\b"
)
# the words of the patterns that typos hide most ("descibe the pictre"): each, spelt right, makes a reading
_TYPO_TARGETS = ("describe", "picture", "photo", "image", "happening", "going", "colour", "written", "count", "shown")
_AFTERTHOUGHT = re.compile(r"\s*(?:,.*|\bor (?:no|not)(?: \w+)?)$")
_EXCLAIMED = re.compile(r"^(?:what an?|such an?)\b")  # "what a sunset!"
_NEEDS_SUBJECT = {RouteKind.PRESENCE, RouteKind.IDENTIFY}


def route_question(question: str, encoder: TextEncoder | None = None) -> Route:
    """The path that answers `question`, and what it asks about: by the patterns, else by the nearest
    prototypes (in the frame space, and CLIP's where `encoder` tells routes apart), else open."""
    text = tidy(question)
    matched = pattern_route(text)
    if matched is not None:
        return _subject_repaired(matched, text)
    if not asks(question, text):
        return Route(RouteKind.OPEN)
    for reading in readings(text)[1:]:  # "I'm trying to settle a bet, what colour is the jacket?"
        if (matched := pattern_route(reading)) is not None and matched.kind is not RouteKind.OPEN:
            if matched.kind is RouteKind.COLOUR and ADVICE.search(text):  # "can you change the colour of the car"
                return Route(RouteKind.OPEN)
            # the thing the clause names, found again ("what shade would you say it is": none), else another's
            return _subject_elsewhere(_subject_repaired(matched, reading), text)
    learned = learned_route(text, encoder)
    return Route(RouteKind.OPEN) if learned.kind is RouteKind.COLOUR and ADVICE.search(text) else learned


def _subject_elsewhere(matched: Route, text: str) -> Route:
    """A clause's route given the thing another clause names, where the clause names none ("the car, what colour
    is it": car)."""
    if matched.subject is None and matched.kind in (RouteKind.COLOUR, RouteKind.COUNT, RouteKind.PRESENCE):
        return Route(matched.kind, named_first(text, matched.kind) or thing_named(text, matched.kind))
    named = named_first(text, RouteKind.IDENTIFY)
    head = named.split()[0] if named else ""
    if matched.kind is RouteKind.DESCRIBE and head in CATEGORIES and head not in NO_SUBJECT | {"thing"}:
        return Route(RouteKind.IDENTIFY, SAME_CATEGORY.get(head, head))  # "the animal, what is it": which animal
    return matched


_NOUN_PHRASE = re.compile(
    r"^(?:(?:the|a|an|this|that|these|those|my|his|her|their|its|our|some) )?(?P<thing>[\w'-]+(?: [\w'-]+){0,5})$"
)
_NOT_A_THING = re.compile(
    r"\b(?:is|are|was|were|do|does|did|can|could|would|will|you|i|me|we|there|it|they|what|which|how|where|who|"
    r"why|when|if|whether|sorry|please|thanks|hey|hi|ok|so|quick|question|wondering|curious)\b"
)
_PLACE_AFTER = re.compile(r"\s+(?:in|on|at|near|by|under|behind|beside|next to|inside|outside|above|below)\b.*$")


def named_first(text: str, kind: RouteKind) -> str | None:
    """The thing a clause of its own names, before or after the question ("the goats, how many", "windows, how
    many has the house got"): a noun phrase, no verb nor question word; for count without where they are, for
    identify its first word (the category, if it is one)."""
    for clause in _CLAUSES.split(text):
        found = _NOUN_PHRASE.match(clause.strip())
        if not found or _NOT_A_THING.search(clause) or _PHOTOS.match(found["thing"].split()[-1]):
            continue
        thing = found["thing"]
        if kind in (RouteKind.COUNT, RouteKind.IDENTIFY):
            thing = _PLACE_AFTER.sub("", thing)
        if kind is RouteKind.IDENTIFY:
            thing = thing.split()[0]
        if thing not in NO_SUBJECT:
            return thing
    return None


def _subject_repaired(matched: Route, text: str) -> Route:
    """A pattern's route with the thing it names found again where the pattern took in more words than the thing
    ("what colour do you think the bag is": bag; "count the number of dogs": dogs) or none."""
    kind, subject = matched.kind, matched.subject
    if subject is not None:  # "the umbrella, roughly", "a fence or no"
        subject = _AFTERTHOUGHT.sub("", subject) or None
        matched = Route(kind, subject)
    if kind is RouteKind.COLOUR and subject is None:  # "what colour would you call the cup?"
        return Route(kind, thing_named(text, kind))
    if kind not in (RouteKind.COLOUR, RouteKind.COUNT, RouteKind.PRESENCE) or subject is None:
        return matched
    if kind is RouteKind.PRESENCE and (found := _HEDGED.match(subject)):
        return Route(kind, found.group(1))  # "is there by any chance a cat?"
    if frame_space().leads_astray(subject.split()[0], kind):
        return Route(kind, thing_named(subject, kind) or (subject if kind is RouteKind.PRESENCE else None))
    return matched


def asks(question: str, text: str) -> bool:
    """Whether `question` (`text` once tidied) is a question or a request at all, not a remark ("It is red.",
    "what a sunset!"): it ends in a question mark, or one of its `readings` opens as some prototype does."""
    if question.rstrip().endswith(("?", "\uff1f")) or _REQUEST.search(question.lower()):
        return True  # a question mark, or "could you tell me", "I want to know", "please"
    space = frame_space()
    opening = {token for reading in readings(text) for token in space.tokens(reading)[:1]}
    return not _EXCLAIMED.match(text) and bool(opening & space.openers)


def learned_route(text: str, encoder: TextEncoder | None = None) -> Route:
    """The fallback for `tidy`'s text that no pattern matched."""
    kind, reading = nearest_kind(text, encoder)
    if kind is RouteKind.OPEN:  # the prototypes see nothing plain: the classifier, where it is sure
        learned, probability = classified_kind(text)
        if probability >= TRUSTED:
            kind, reading = learned, text
    if kind in (RouteKind.OPEN, RouteKind.DESCRIBE, RouteKind.MOOD):
        return Route(kind)
    # the thing is looked for where the question is asked ("I'm off on holiday, how many bags do I see"), then
    # anywhere ("the car, what colour would you say")
    find = _category if kind is RouteKind.IDENTIFY else lambda part: thing_named(part, kind)
    subject = find(reading) or (named_first(text, kind) if kind is not RouteKind.IDENTIFY else None) or find(text)
    if subject is None and kind is RouteKind.IDENTIFY and _KINDS & set(words(reading)):
        # "what breed is the dog": the kind of a category named as the thing; "the cat, what breed is it"
        named = thing_named(reading, kind) or named_first(text, kind)
        subject = SAME_CATEGORY.get(named, named) if named in CATEGORIES else None
    if subject is None and kind in _NEEDS_SUBJECT:
        return Route(RouteKind.OPEN)
    return Route(kind, subject)


TRUSTED = 0.7  # the classifier's probability a route needs, where the prototypes leave a question open
# what the prototypes' X stands for when the classifier trains on them: things of every size, one and many
_THINGS = ("dog", "car", "umbrella", "red ball", "tree", "woman", "bottle", "house", "kite", "bicycle", "sign", "boat")
_MANY = ("dogs", "cars", "people", "birds", "chairs", "trees", "flowers", "cups", "kids", "windows", "sheep", "boats")
_PLURAL_BEFORE = {"are", "many", "these", "those", "any", "some", "all", "of", "were"}


def classifier_features(text: str) -> list[str]:
    """`tidy`'s text as the classifier's features: its words and word pairs (as `words` spells them), the frame's
    tokens and token pairs (other words as the slot), and each word's character 3- to 5-grams (typos share most)."""
    found = words(text)
    tokens = frame_space().tokens(text)
    out = [f"w {term}" for term in found] + [f"w {a} {b}" for a, b in itertools.pairwise(["^", *found, "$"])]
    out += [f"t {a} {b}" for a, b in itertools.pairwise(["^", *tokens, "$"])]
    for term in _WORD.findall(text):
        padded = f" {term} "
        out += [f"c {padded[i : i + n]}" for n in (3, 4, 5) for i in range(len(padded) - n + 1)]
    return out


def training_questions() -> list[tuple[str, str]]:
    """The classifier's labelled questions: `data/intents.jsonl`, and the prototypes with their X named."""
    lines = resources.files(__package__).joinpath("data/intents.jsonl").read_text(encoding="utf-8").splitlines()
    found = [json.loads(line) for line in lines if line.strip() and not line.startswith("#")]
    out = [(tidy(row["question"]), row["kind"]) for row in found]
    for kind, phrases in PROTOTYPES.items():
        for index, phrase in enumerate(phrases):
            for turn in range(3):
                tidied = tidy(phrase).split()
                named = [
                    (_MANY if before in _PLURAL_BEFORE else _THINGS)[(index * 3 + turn) % len(_THINGS)]
                    if term == SLOT
                    else term
                    for before, term in zip(["^", *tidied], tidied)
                ]
                out.append((" ".join(named), str(kind)))
    return out


@cache
def classifier() -> TextClassifier:
    texts, labels = zip(*training_questions())
    return TextClassifier.fit(texts, labels, classifier_features)


def classified_kind(text: str) -> tuple[RouteKind, float]:
    """The classifier's route for `text` and its probability."""
    found = classifier().probabilities(text)
    label = max(found, key=found.__getitem__)
    return RouteKind(label), found[label]


def nearest_kind(text: str, encoder: TextEncoder | None = None) -> tuple[RouteKind, str]:
    """The route whose prototypes `text` (or one of its `readings`) is plainly nearest, or OPEN; and that reading."""
    space = frame_space()
    view = clip_view(encoder) if encoder is not None else None
    best: dict[RouteKind, tuple[float, str]] = {}
    for reading in readings(text):
        similarity = space.similarity(reading)
        if encoder is not None and view is not None and view.trusted:
            similarity = (similarity + view.similarity(encoder, reading)) / 2
        for kind, value in zip(space.kinds, similarity.tolist()):
            if value > best.get(kind, (-1.0, ""))[0]:
                best[kind] = (value, reading)

    def pointed(kind: RouteKind) -> bool:  # a word of the question is mostly `kind`'s
        return space.points_to(text, kind) or (kind is RouteKind.DESCRIBE and _WHAT.search(text) is not None)

    (first, (nearest, reading)), (_, (runner_up, _)) = sorted(best.items(), key=lambda item: -item[1][0])[:2]
    plain = nearest >= NEAR_ENOUGH and nearest - runner_up >= MARGIN and pointed(first)
    return (first, reading) if plain else (RouteKind.OPEN, text)


def readings(text: str) -> list[str]:
    """`text`, each of its clauses ("the car, what colour is it"), and each from its first question word on
    ("I'm curious what this shows"), that as a direct question too ("what breed this dog is": "what breed is this
    dog"): a lead-in or an afterthought the prototypes lack does not hide the question."""
    found = [text]
    if (spelt := _typos_spelt(text)) != text:
        found.append(spelt)
    clauses = [part.strip() for version in dict.fromkeys((text, spelt)) for part in _CLAUSES.split(version)]
    for clause in [spelt, *(part for part in clauses if part)]:
        starts = [*_ASKED.finditer(clause), *_REQUESTED.finditer(clause)]
        for embedded in [clause, *(clause[start.start() :] for start in starts if start.start() > 0)]:
            direct = _INDIRECT.sub(_asked_directly, _OPINION.sub(r"\g<asked>", embedded))
            direct = _WHETHER.sub(r"\g<verb> \g<thing> \g<rest>", direct)
            for reading in (embedded, _INDIRECT_DOES.sub(r"what does \g<thing> \g<verb>", direct)):
                if reading not in found:
                    found.append(reading)
    return found


def _typos_spelt(text: str) -> str:
    """`text` with a word the prototypes lack that is a typo of one of `_TYPO_TARGETS` spelt right."""
    frame = frame_space().frame

    def spelt(found: re.Match[str]) -> str:
        term = found.group()
        if len(term) < 5 or term in frame or next(iter(words(term)), term) in frame:
            return term
        # an inflection ("coloured", "photos") is no typo
        like = [target for target in _TYPO_TARGETS if target[0] == term[0] and not term.startswith(target)]
        return next(iter(difflib.get_close_matches(term, like, n=1, cutoff=0.85)), term)

    return _WORD.sub(spelt, text)


def _asked_directly(found: re.Match[str]) -> str:
    """An indirect question in direct order: "what this could be": "what could this be"."""
    verb, be = [*found["verb"].split(), ""][:2]
    return " ".join(part for part in (found["asked"], verb, found["thing"], be) if part) + (found["tail"] or "")


def words(text: str) -> list[str]:
    """`tidy`'s text as words: possessive 's and plural s dropped, colours and moods as their class."""
    out = []
    for word in _WORD.findall(text):
        word = word.removesuffix("'s")
        if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")) and word != "does":
            word = word[:-1]
        out.append(_CLASSES.get(word, "<photo>" if _PHOTOS.match(word) else word))
    return out


class FrameSpace:
    """Questions as TF-IDF vectors of their frame's words and word pairs; the prototypes' rows."""

    def __init__(self, prototypes: Mapping[RouteKind, tuple[str, ...]]) -> None:
        phrases = [(kind, tidy(phrase)) for kind, examples in prototypes.items() for phrase in examples]
        self.frame = {word for _, phrase in phrases for word in words(phrase)} - {SLOT}
        self._typos: dict[str, str] = {}
        counted = [self.features(phrase) for _, phrase in phrases]
        seen = Counter(feature for features in counted for feature in features)
        self.idf = {feature: math.log((1 + len(counted)) / count) for feature, count in seen.items()}
        self.column = {feature: column for column, feature in enumerate(self.idf)}
        self.kinds = [kind for kind, _ in phrases]
        # each word's share of the prototypes that use it, by route: "colour" points to colour, "is" nowhere
        uses = Counter((word, kind) for kind, phrase in phrases for word in set(self.tokens(phrase)) - {SLOT})
        used = Counter(word for word, _ in uses.elements())
        self.points = {(word, kind): count / used[word] for (word, kind), count in uses.items()}
        self.spread = Counter(word for word, _ in uses)
        self.rows = torch.stack([self.vector(features) for features in counted])
        # the words a question or a request opens with: "what", "is", "count", "describe" (not "the", "a")
        self.openers = {token for _, phrase in phrases for token in self.tokens(phrase)[:1]} - {SLOT, "the", "a", "an"}

    def tokens(self, text: str) -> list[str]:
        """The frame's words, with each run of other words as one slot."""
        out: list[str] = []
        before = ["^", "^"]
        for word in words(text):
            # a category is asked for after "what", "which", "this", "kind of"; elsewhere it is a thing
            asked = (
                word not in CATEGORIES
                or word in _PLACES
                or before[-1] in _ASKING
                or (before[-1] == "of" and before[-2] in _KINDS)
                or (before[-1] == "the" and before[-2] in _NAMING)
            )
            token = (word if word in self.frame else self.misspelt(word)) if asked else SLOT
            before.append(word)
            if not (token == SLOT and out and out[-1] == SLOT):
                out.append(token)
        return out

    def misspelt(self, term: str) -> str:
        """The frame's word that `term` is a form ("describing": describe) or a typo ("colr": colour) of, or the
        slot."""
        if term.endswith("ing") and (found := {term[:-3], term[:-3] + "e"} & self.frame):
            return found.pop()
        if term not in self._typos:
            like = [known for known in self.frame if known[:1] == term[:1]]  # typos keep the first letter
            close = difflib.get_close_matches(term, like, n=1, cutoff=0.8) if len(term) >= 4 else []
            self._typos[term] = close[0] if close else SLOT
        return self._typos[term]

    def features(self, text: str) -> Counter[str]:
        tokens = self.tokens(text)
        ends = ["^", *tokens, "$"]
        return Counter([*tokens, *(f"{a} {b}" for a, b in itertools.pairwise(ends))])

    def vector(self, features: Counter[str]) -> torch.Tensor:
        vector = torch.zeros(len(self.column))
        for feature, count in features.items():
            if feature in self.column:
                vector[self.column[feature]] = count * self.idf[feature]
        return F.normalize(vector, dim=0)

    def leads_astray(self, first: str, kind: RouteKind) -> bool:
        """Whether `first`, first in what a pattern took as the thing asked about, is a word of questions rather
        than of things: one that points to `kind` ("number" of "the number of dogs") or that most routes use."""
        stem = next(iter(words(first)), first)
        return self.points.get((stem, kind), 0.0) >= POINTS or self.spread.get(stem, 0) >= 2

    def points_to(self, text: str, kind: RouteKind) -> bool:
        """Whether a word of `text` is mostly used by `kind`'s prototypes: a route needs one to be taken."""
        return any(self.points.get((word, kind), 0.0) >= POINTS for word in self.tokens(text))

    def similarity(self, text: str) -> torch.Tensor:
        """Cosine similarity of `text` with each prototype, in `kinds` order."""
        return self.rows @ self.vector(self.features(text))


@cache
def frame_space() -> FrameSpace:
    return FrameSpace(PROTOTYPES)


@dataclass(frozen=True)
class ClipView:
    """The prototypes in one CLIP's text space, and whether that space tells their routes apart."""

    rows: torch.Tensor  # (P, D), the prototypes in `FrameSpace.kinds` order
    typical: float  # the mean similarity of two prototypes: CLIP's similarities are rescaled from it to 1
    separates: float  # the share of prototypes whose nearest other prototype has their route

    @property
    def trusted(self) -> bool:
        return self.separates >= CLIP_TRUSTED

    def similarity(self, encoder: TextEncoder, text: str) -> torch.Tensor:
        raw = (self.rows @ encoder.embed_texts([_for_clip(text)])[0].to(self.rows)).cpu()
        return (raw - self.typical) / (1 - self.typical)


_VIEWS: dict[str, ClipView] = {}
_VIEWS_LOCK = threading.Lock()


def clip_view(encoder: TextEncoder) -> ClipView:
    """The prototypes embedded by `encoder`, once per loaded model (by its identity)."""
    with _VIEWS_LOCK:
        if encoder.identity not in _VIEWS:
            space = frame_space()
            phrases = [tidy(phrase) for examples in PROTOTYPES.values() for phrase in examples]
            rows = encoder.embed_texts([_for_clip(phrase) for phrase in phrases])
            similar = rows @ rows.T
            count = len(phrases)
            typical = float((similar.sum() - similar.diagonal().sum()) / (count * (count - 1)))
            nearest = similar.fill_diagonal_(-2).argmax(dim=1).tolist()
            separates = sum(space.kinds[i] == space.kinds[j] for i, j in enumerate(nearest)) / count
            _VIEWS[encoder.identity] = ClipView(rows, min(typical, 0.99), separates)
            log.info(
                "routing fallback: CLIP %s puts %.2f of the prototypes nearest one of their own route: %s",
                encoder.identity,
                separates,
                "averaged in" if separates >= CLIP_TRUSTED else "not used, the phrasings' frames alone decide",
            )
        return _VIEWS[encoder.identity]


def _for_clip(text: str) -> str:
    return " ".join("something" if word == SLOT else word for word in text.split())


def thing_named(text: str, kind: RouteKind) -> str | None:
    """What `text` asks about, as asked ("circles", "red star"), or None: the first run of words the
    prototypes do not use (or that name a category) right after an article or "of"; for count, else the last
    run. Colours are no part of a colour question's thing ("is that cup blue or green?" asks about the cup)."""
    frame = frame_space().frame
    runs: list[tuple[bool, list[str]]] = []  # (introduced, words)
    previous = "^"
    for word in _WORD.findall(text):
        plain = word.removesuffix("'s")
        stem = next(iter(words(plain)), plain)
        named = (stem not in frame or stem in CATEGORIES or (stem == "<colour>" and kind is not RouteKind.COLOUR)) and (
            plain not in NO_SUBJECT and stem != "<photo>"
        )
        if named and runs and runs[-1][1] and previous == runs[-1][1][-1]:
            runs[-1][1].append(plain)
        elif named:
            runs.append((previous in _INTRODUCERS, [plain]))
        previous = plain if named else word
    introduced = [run for flag, run in runs if flag]
    if introduced:
        return " ".join(introduced[0])
    return " ".join(runs[-1][1]) if runs and kind is RouteKind.COUNT else None


def _category(text: str) -> str | None:
    """The category an identify question asks for ("what breed of dog": dog), "place" for where, else None."""
    places = ("where", "city", "country")
    found = [word for word in frame_space().tokens(text) if word in CATEGORIES or word in places]
    if not found:
        return None
    word = found[0]
    return "place" if word in places else SAME_CATEGORY.get(word, word)
