"""Score a captioner on a captions file: BLEU-4 and CIDEr (pycocoevalcap's scorers) and mean CLIPScore.

Each photo's own result is kept too (`EvaluationReport.photos`), for `report.write_contact_sheet`.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np
import torch

from clipchat.errors import BadImage
from clipchat.facts import Tag

from ..decoding.strategies import DecodingOptions
from ..intake.images import ImageLimits, load_image
from ..models.scoring import clip_score
from .datasets import CaptionedImage

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ScoredPhoto:
    image: Path
    caption: str  # generated
    references: tuple[str, ...]
    tags: tuple[Tag, ...]
    clip_score: float


@dataclass(frozen=True)
class EvaluationReport:
    images: int
    skipped: int
    bleu4: float
    cider: float
    clip_score: float
    captions: dict[str, str] = field(default_factory=dict)  # image path -> generated caption
    photos: list[ScoredPhoto] = field(default_factory=list)  # in the captions file's order

    def to_dict(self) -> dict:
        """The scores and captions (`--json`); each photo's details go to the HTML report instead."""
        return {item.name: getattr(self, item.name) for item in fields(self) if item.name != "photos"}


def normalize_for_scoring(text: str) -> str:
    """Lower case, words only: the role PTBTokenizer plays in the COCO toolkit, without its Java."""
    return " ".join(re.findall(r"[a-z0-9]+(?:'[a-z]+)?", text.lower()))


def evaluate(
    models,
    data: list[CaptionedImage],
    options: DecodingOptions | None = None,
    batch_size: int = 32,
    image_limits: ImageLimits = ImageLimits(),
) -> EvaluationReport:
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider

    generated: dict[str, str] = {}
    references: dict[str, list[str]] = {}
    photos: list[ScoredPhoto] = []
    skipped = 0
    for start in range(0, len(data), batch_size):
        images, items = [], []
        for item in data[start : start + batch_size]:
            try:
                images.append(load_image(item.image.read_bytes(), image_limits))
                items.append(item)
            except (OSError, BadImage) as error:
                skipped += 1
                log.warning("skipping %s: %s", item.image, getattr(error, "detail", error))
        descriptions = models.describe(images, options)
        if not descriptions:
            continue
        texts = models.encoder.embed_texts([d.caption for d in descriptions]).cpu()
        vectors = torch.from_numpy(np.stack([d.embedding for d in descriptions]))
        scores = clip_score(vectors, texts).tolist()
        for item, description, score in zip(items, descriptions, scores):
            generated[str(item.image)] = description.caption
            references[str(item.image)] = list(item.captions)
            photos.append(ScoredPhoto(item.image, description.caption, item.captions, description.tags, score))
    if not generated:
        return EvaluationReport(0, skipped, 0.0, 0.0, 0.0)
    hypotheses = {k: [normalize_for_scoring(v)] for k, v in generated.items()}
    refs = {k: [normalize_for_scoring(r) for r in v] for k, v in references.items()}
    bleu, _ = Bleu(4).compute_score(refs, hypotheses, verbose=0)
    cider, _ = Cider().compute_score(refs, hypotheses)
    return EvaluationReport(
        images=len(generated),
        skipped=skipped,
        bleu4=float(bleu[3]),
        cider=float(cider),
        clip_score=float(np.mean([photo.clip_score for photo in photos])),
        captions=generated,
        photos=photos,
    )
