"""Album questions answered across its photos by CLIP, naming the photos by position.

Each photo's stored CLIP vector is classified once per vocabulary section a question names ("red" is a colour,
"stars" a shape, "the biggest" a size); each photo's value is CLIP's, or its caption's where the two differ and
CLIP is not sure (`agreement`), so that the answer does not contradict the album's own reply. A thing no section
holds ("a dog") is looked for as a presence question is.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from clipchat.facts import PhotoFacts, Tag
from clipchat.i18n import N_, Phrase, Said, english, say, word

from . import agreement
from .album import AlbumAsk, Compare, HowMany, Which
from .conversation import Answer, DialogueModels
from .describe import sentence
from .grounded import COLOUR_NAMES, COLOURS, NUMBER_NAMES, article, singular
from .routing import RouteKind

ORDINAL_NAMES = (
    word("ordinal", "first"),
    word("ordinal", "second"),
    word("ordinal", "third"),
    word("ordinal", "fourth"),
    word("ordinal", "fifth"),
    word("ordinal", "sixth"),
    word("ordinal", "seventh"),
    word("ordinal", "eighth"),
    word("ordinal", "ninth"),
    word("ordinal", "tenth"),
)
SIZES = ("small", "large")
LARGEST = N_("The {ordinal} photo shows the largest one.")
SMALLEST = N_("The {ordinal} photo shows the smallest one.")
_LARGER = {"biggest", "largest", "bigger", "larger", "big", "large", "huge"}
_SMALLER = {"smallest", "smaller", "tiniest", "tiny", "little", "small"}
_ADJECTIVES = {"colour", "colours", "color", "colors", "size", "sizes"}
_FILLER = {"the", "a", "an", "one", "ones", "photo", "photos", "picture", "pictures", "there", "some", "any", "of"}


@dataclass(frozen=True)
class Criterion:
    name: str  # the vocabulary section's: "colour", "shape"
    section: tuple[str, ...]  # the labels a photo's value is chosen among
    label: str

    @property
    def describes(self) -> bool:
        """A colour or a size says what a thing is like ("red"); the other sections name things ("a star")."""
        return self.name in _ADJECTIVES


def sections(models: DialogueModels) -> list[tuple[str, tuple[str, ...]]]:
    """The model set's named vocabulary sections, with the built-in colours and sizes where it has none."""
    named = [(name.lower(), labels) for name, labels in models.tagger.vocabulary.sections if name]
    if not any(name in ("colour", "colours", "color", "colors") for name, _ in named):
        named.append(("colour", COLOURS))
    if not any(name in ("size", "sizes") for name, _ in named):
        named.append(("size", SIZES))
    return named


def criteria(models: DialogueModels, value: str) -> tuple[list[Criterion], list[str], int]:
    """The labels `value` names ("a red star": red among the colours, star among the shapes), the words
    left over, and whether it asks for the largest (1), the smallest (-1) or neither (0)."""
    words = ["gray" if w == "grey" else w for w in value.lower().replace("?", "").split()]
    used = [False] * len(words)
    found: list[tuple[int, Criterion]] = []
    labels = sorted(
        ((label, name, s) for name, s in sections(models) for label in s), key=lambda item: -len(item[0].split())
    )
    for label, name, section in labels:
        for start in agreement._at(words, label):
            span = range(start, start + len(label.split()))
            if not any(used[i] for i in span):
                for i in span:
                    used[i] = True
                found.append((start, Criterion(name, section, label)))
    extreme = 0
    for i, w in enumerate(words):
        if not used[i] and w in _LARGER | _SMALLER:
            extreme, used[i] = (1 if w in _LARGER else -1), True
    left = [w for i, w in enumerate(words) if not used[i] and w not in _FILLER]
    return [c for _, c in sorted(found, key=lambda item: item[0])], left, extreme


def values(models: DialogueModels, album: Sequence[PhotoFacts], labels: tuple[str, ...]) -> list[list[Tag]]:
    """Each photo's ranking of `labels`, its caption's value first where CLIP is not sure it is wrong."""
    images = torch.stack(
        [torch.as_tensor(f.embedding, dtype=torch.float32, device=models.encoder.device) for f in album]
    )
    settled = []
    for facts, ranked in zip(album, models.tagger.classify(images, list(labels))):
        disagreed = agreement.disagreement(ranked, agreement.caption_label(facts.caption, labels))
        if disagreed and not disagreed.clip_first:
            ranked = sorted(ranked, key=lambda tag: tag.label != disagreed.said)
        settled.append(ranked)
    return settled


def _present(models: DialogueModels, album: Sequence[PhotoFacts], thing: str) -> list[bool]:
    vocabulary = [label for label in models.tagger.vocabulary.labels if label != thing]
    return [any(tag.label == thing for tag in ranked[:3]) for ranked in values(models, album, (thing, *vocabulary))]


def _score(ranked: Sequence[Tag], label: str) -> float:
    return next(tag.score for tag in ranked if tag.label == label)


def _number(n: int) -> Phrase | str:
    return NUMBER_NAMES.get(("one", "two", "three", "four", "five", "six")[n - 1], str(n)) if 0 < n <= 6 else str(n)


def ordinals(positions: Sequence[int]) -> Said:
    """ "first", "first and third", "first, second and fourth"."""
    names = [ORDINAL_NAMES[p] if p < len(ORDINAL_NAMES) else str(p + 1) for p in positions]
    if len(names) == 1:
        return names[0]
    some: list[Said] = []
    for name in names[:-1]:
        some += [", ", name] if some else [name]
    return say("{some} and {last}", some=tuple(some), last=names[-1])


def _value(found: list[Criterion], left: list[str], plural: bool) -> tuple[Said, bool]:
    """The value asked about in words, and whether they are the models' own (not translated)."""
    if not found:
        thing = " ".join(left)
        return (thing if thing.endswith("s") else thing + "s") if plural else article(singular(thing)), True
    nouns = [c.label for c in found if not c.describes]
    if not nouns and len(found) == 1 and found[0].label in COLOUR_NAMES:
        return COLOUR_NAMES[found[0].label], False
    text = " ".join(c.label for c in found)
    if not nouns:
        return text, True
    return (text + "s" if plural else article(text)), True


def answer_across(models: DialogueModels, album: Sequence[PhotoFacts], ask: AlbumAsk) -> Answer | None:
    """The answer to `ask` across the album's photos, or None when it names nothing to look for."""
    total = len(album)
    if isinstance(ask, Compare):
        return _compared(models, album)
    value = ask.value if isinstance(ask, Which | HowMany) else ""
    if isinstance(ask, HowMany) and not value:
        said: Said = say("There are {total} photos in the album.", total=total)
        return Answer(english(said), RouteKind.ALBUM, 1.0, {"photos": list(range(total))}, said)
    found, left, extreme = criteria(models, value)
    if extreme:
        name, size = next((name, labels) for name, labels in sections(models) if name in ("size", "sizes"))
        wanted = _LARGER if extreme > 0 else _SMALLER
        label = next((s for s in size if s in wanted), size[-1] if extreme > 0 else size[0])
        found.append(Criterion(name, size, label))
    vocabulary = models.tagger.vocabulary.labels
    if not found and (not left or singular(" ".join(left)) not in vocabulary):
        return None  # nothing it names is something CLIP has a word for: not an album question after all
    if found:
        ranked = {c: values(models, album, c.section) for c in found}
        matches = [p for p in range(total) if all(ranked[c][p][0].label == c.label for c in found)]
    else:
        matches = [p for p, there in enumerate(_present(models, album, singular(" ".join(left)))) if there]
    if extreme and not matches:  # none looks large: the largest of them
        size_asked = found[-1]
        matches = [max(range(total), key=lambda p: _score(ranked[size_asked][p], size_asked.label))]
    if extreme and len(matches) == 1:
        said = say(LARGEST if extreme > 0 else SMALLEST, ordinal=ordinals(matches))
        return Answer(english(said), RouteKind.ALBUM, 1.0, {"photos": matches, "photo": matches[0]}, said)
    named, quoted = _value(found, left, plural=len(matches) > 1)
    if len(matches) == 1:
        said = say("The {ordinal} photo is {value}.", ordinal=ordinals(matches), value=named)
    elif not matches:
        said = say("None of the {total} photos is {value}.", total=_number(total), value=named)
    elif len(matches) == total:
        said = say("All {total} photos are {value}.", total=_number(total), value=named)
    else:
        said = say(
            "Of the {total} photos, {count} are {value}: the {ordinals}.",
            total=_number(total),
            count=_number(len(matches)),
            value=named,
            ordinals=ordinals(matches),
        )
    details: dict[str, object] = {"photos": matches, "quotes_models": quoted}
    if len(matches) == 1:
        details["photo"] = matches[0]  # the photo under discussion from now on
    return Answer(english(said), RouteKind.ALBUM, 1.0, details, said)


def _compared(models: DialogueModels, album: Sequence[PhotoFacts]) -> Answer:
    """A line per photo (its caption), then what they all share and where they differ, section by section."""
    lines: list[Said] = []
    for position, facts in enumerate(album):
        lines += ["\n"] if lines else []
        lines.append(
            say("The {ordinal} photo: {caption}", ordinal=ordinals([position]), caption=sentence(facts.caption))
        )
    alike: list[str] = []
    differ: list[str] = []
    for name, labels in sections(models):
        if len(labels) < 2:
            continue
        tops = {ranked[0].label for ranked in values(models, album, labels)}
        (alike if len(tops) == 1 else differ).append(tops.pop() if len(tops) == 1 else name)
    if alike:
        lines += ["\n", say("All of them: {labels}.", labels=", ".join(alike))]
    if differ:
        lines += ["\n", say("They differ in {sections}.", sections=", ".join(differ))]
    said = tuple(lines)
    return Answer(english(said), RouteKind.ALBUM, 1.0, {"photos": list(range(len(album))), "quotes_models": True}, said)
