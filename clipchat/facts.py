"""What the models saw in one photo: made by vision, stored by storage, read by dialogue and the bot."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

WRITING = "writing"  # the section of the one tag saying that the photo shows text (`ZeroShotTagger.writing`)


@dataclass(frozen=True)
class Tag:
    label: str
    score: float  # probability within the label's section (or among the labels asked about)
    section: str = ""


@dataclass(frozen=True, eq=False)
class PhotoFacts:
    caption: str
    tags: tuple[Tag, ...]  # best first
    embedding: np.ndarray  # (D,) float32, L2-normalised CLIP image vector
    model: str  # identity of the CLIP that made `embedding`: vectors of different models never meet

    @property
    def topical(self) -> tuple[Tag, ...]:
        """The tags about what the photo shows, without the note that it shows text."""
        return tuple(tag for tag in self.tags if tag.section != WRITING)

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(tag.label for tag in self.topical)

    @property
    def shows_text(self) -> bool:
        """CLIP found text or writing in the photo (`vision.models.tagger.ZeroShotTagger.writing`)."""
        return any(tag.section == WRITING for tag in self.tags)
