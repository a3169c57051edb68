"""Zero-shot tags: CLIP compares the photo with a prompt-ensembled vocabulary.

A vocabulary is an editable text file, one label per line. Labels under one
`[section]` header compete in one softmax; a file without headers is one section.
The built-in `everyday` vocabulary is a single section of a few hundred objects,
animals, foods, scenes and qualities, so that "dog" and "beach" compete for the
same photo and irrelevant groups are never forced to answer.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import torch

from clipchat.errors import InvalidConfig, InvalidInput, ModelNotFound
from clipchat.facts import Tag
from clipchat.i18n import N_

log = logging.getLogger(__name__)

# A few of CLIP's ImageNet prompt templates: averaging over them is worth a few points of accuracy.
DEFAULT_TEMPLATES = (
    "a photo of a {}.",
    "a blurry photo of a {}.",
    "a close-up photo of a {}.",
    "a good photo of the {}.",
    "a picture of a {}.",
    "an image of a {}.",
)


@dataclass(frozen=True)
class Vocabulary:
    sections: tuple[tuple[str, tuple[str, ...]], ...]  # (name, labels) in file order

    @property
    def labels(self) -> list[str]:
        return [label for _, labels in self.sections for label in labels]

    def digest(self) -> str:
        text = "\n".join(f"[{name}]\n" + "\n".join(labels) for name, labels in self.sections)
        return hashlib.sha256(text.encode()).hexdigest()

    @classmethod
    def parse(cls, text: str) -> Vocabulary:
        sections: list[tuple[str, list[str]]] = [("", [])]
        for raw in text.splitlines():
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            header = re.fullmatch(r"\[(.+)\]", line)
            if header:
                sections.append((header.group(1).strip(), []))
            elif line not in sections[-1][1]:
                sections[-1][1].append(line)
        kept = tuple((name, tuple(labels)) for name, labels in sections if labels)
        if not kept:
            raise InvalidConfig("The tag vocabulary has no labels.")
        return cls(kept)


def load_vocabulary(name_or_path: str) -> Vocabulary:
    """A built-in vocabulary by name (`everyday`) or a text file."""
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return Vocabulary.parse(path.read_text(encoding="utf-8"))
    builtin = resources.files("vision.catalog") / "vocab" / f"{name_or_path}.txt"
    if builtin.is_file():
        return Vocabulary.parse(builtin.read_text(encoding="utf-8"))
    names = sorted(p.name.removesuffix(".txt") for p in (resources.files("vision.catalog") / "vocab").iterdir())
    raise ModelNotFound(
        f"No tag vocabulary {name_or_path!r}: built-in ones are {', '.join(names)}, "
        "or give the path of a text file with one label per line."
    )


def parse_label_list(text: str) -> list[str]:
    """ "a cat, a dog or a fox?" -> ["cat", "dog", "fox"]"""
    parts = re.split(r",|;|/|\bor\b|\band\b", text.strip().rstrip("?!."))
    labels: list[str] = []
    for part in parts:
        label = re.sub(r"^(a|an|the)\s+", "", part.strip(), flags=re.IGNORECASE).strip()
        if label and label.lower() not in (existing.lower() for existing in labels):
            labels.append(label)
    return labels


class ZeroShotTagger:
    def __init__(
        self,
        encoder,
        vocabulary: Vocabulary,
        templates: Sequence[str] = DEFAULT_TEMPLATES,
        cache_dir: Path | None = None,
        max_cached_label_sets: int = 256,
    ) -> None:
        if not templates or any("{}" not in t for t in templates):
            raise InvalidConfig("Every tag template needs a {} where the label goes.")
        self.encoder = encoder
        self.vocabulary = vocabulary
        self.templates = tuple(templates)
        self.cache_dir = cache_dir
        self._label_sets: OrderedDict[tuple[str, ...], torch.Tensor] = OrderedDict()
        self._max_cached = max_cached_label_sets
        self._keys = [(name, label) for name, labels in vocabulary.sections for label in labels]
        self.vocabulary_embeddings = self._vocabulary_embeddings()  # (L, D)
        self._vocabulary_rows = {label: row for row, (_, label) in enumerate(self._keys)}

    @property
    def cached_label_sets(self) -> int:
        return len(self._label_sets)

    def forget_label_sets(self) -> int:
        """Drop every cached /tags label set (they are people's words); returns how many there were."""
        count = len(self._label_sets)
        self._label_sets.clear()
        return count

    def tag(self, images: torch.Tensor, top_k: int = 5, threshold: float = 0.1) -> list[list[Tag]]:
        """(B, D) normalised image vectors -> up to `top_k` tags each, scored above `threshold`, best first."""
        probs = self._section_probabilities(images)
        results = []
        for row in probs:
            tags = [
                Tag(label, float(p), section) for (section, label), p in zip(self._keys, row.tolist()) if p >= threshold
            ]
            results.append(sorted(tags, key=lambda t: t.score, reverse=True)[:top_k])
        return results

    def classify(self, images: torch.Tensor, labels: Sequence[str]) -> list[list[Tag]]:
        """Custom labels at call time ("a cat, a dog or a fox?"): every label, scored, best first."""
        if len(labels) < 2:
            raise InvalidInput(N_("Give me at least two labels to choose between, separated by commas or 'or'."))
        embeddings = self.label_embeddings(labels)
        probs = (self.encoder.logit_scale * images.float() @ embeddings.T).softmax(dim=-1)
        return [
            sorted((Tag(label, float(p)) for label, p in zip(labels, row)), key=lambda t: t.score, reverse=True)
            for row in probs
        ]

    def label_embeddings(self, labels: Sequence[str]) -> torch.Tensor:
        """(L, D) prompt-ensembled text vectors, remembered for recently used label sets."""
        key = tuple(labels)
        if key in self._label_sets:
            self._label_sets.move_to_end(key)
            return self._label_sets[key]
        # Vocabulary labels already have their vectors: embed only the ones the vocabulary lacks.
        new = [label for label in dict.fromkeys(labels) if label not in self._vocabulary_rows]
        fresh = dict(zip(new, self._embed_labels(new))) if new else {}
        embeddings = torch.stack(
            [
                fresh[label] if label in fresh else self.vocabulary_embeddings[self._vocabulary_rows[label]]
                for label in labels
            ]
        )
        self._label_sets[key] = embeddings
        if len(self._label_sets) > self._max_cached:
            self._label_sets.popitem(last=False)
        return embeddings

    def _embed_labels(self, labels: Sequence[str]) -> torch.Tensor:
        return zero_shot_weights(self.encoder, labels, self.templates)

    def _vocabulary_embeddings(self) -> torch.Tensor:
        path = self._cache_path()
        if path is not None and path.is_file():
            from safetensors.torch import load_file

            return load_file(str(path))["embeddings"].to(self.encoder.device)
        embeddings = self._embed_labels(self.vocabulary.labels)
        if path is not None:
            from safetensors.torch import save_file

            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_suffix(".partial")
            save_file({"embeddings": embeddings.cpu().contiguous()}, str(partial))
            partial.replace(path)  # atomic: two processes starting together never read half a file
            log.info("cached %d tag embeddings in %s", len(embeddings), path)
        return embeddings

    def _cache_path(self) -> Path | None:
        if self.cache_dir is None:
            return None
        key = hashlib.sha256(
            "\n".join([self.encoder.identity, self.vocabulary.digest(), *self.templates]).encode()
        ).hexdigest()[:24]
        return self.cache_dir / "tag-embeddings" / f"{key}.safetensors"

    def _section_probabilities(self, images: torch.Tensor) -> torch.Tensor:
        logits = (
            self.encoder.logit_scale
            * images.float().to(self.vocabulary_embeddings.device)
            @ self.vocabulary_embeddings.T
        )  # (B, L)
        probs, start = torch.empty_like(logits), 0
        for _, labels in self.vocabulary.sections:
            stop = start + len(labels)
            probs[:, start:stop] = logits[:, start:stop].softmax(dim=-1)
            start = stop
        return probs


def zero_shot_weights(encoder, labels: Sequence[str], templates: Sequence[str]) -> torch.Tensor:
    """(L, D) float32: each label's text vectors averaged over the templates, on the sphere (open_clip's ensemble)."""
    from open_clip import build_zero_shot_classifier  # here: `import vision` stays light for `doctor --alive`

    per_batch = max(1, encoder.batch_size * 4 // len(templates))  # about as many texts per pass as embed_texts
    with torch.inference_mode():
        weights = build_zero_shot_classifier(
            encoder.model,
            encoder.tokenizer,
            list(labels),
            list(templates),
            num_classes_per_batch=per_batch,
            device=encoder.device,
        )  # (D, L)
    return weights.T.float()
