"""Whether a photo shows text, for the caption to say so (and offer /read): CLIP zero-shot, checked first.

    check = WritingCheck(encoder)
    check.tags(vectors)          # per photo: Tag("text", p, WRITING) where text is likely, else None

Why this method: it is the cheapest honest one. CLIP is already loaded and each photo's vector already made, so a
photo costs one (B, D) x (D, 2) product. Real CLIPs learnt from web photos whose captions often quote the words in
them (the "typographic attack" is how well they read), so "a photo with text" is among what they tell apart
best. An OCR model would say what the text is, but costs a model and a pass per photo; that there is text is enough
to offer /read, which runs the answer model that reads it only when asked.

Not every CLIP knows text (the test world's learnt only shapes), and CLIP's zero-shot scores are sharp whatever it
knows, so a CLIP is first shown photos it must tell apart: plain backgrounds with and without words drawn on
them, made here. One that does not separate them notes text in no photo.
"""

from __future__ import annotations

import logging
import random
import threading

import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont

from clipchat.facts import WRITING, Tag

log = logging.getLogger(__name__)

WITH_TEXT = ("a photo with text or writing on it", "a sign with words written on it", "a photo of printed letters")
WITHOUT_TEXT = ("a photo with no text", "a plain picture", "a photo of a plain surface")
TEXT_LIKELY = 0.5  # the probability of "with text" over "without", at CLIP's own logit scale, that notes it
PROBE_WORDS = ("OPEN", "SALE", "EXIT", "HELLO", "STOP", "CAFE", "PARK", "BOOKS")
PROBE_COLOURS = ("white", "khaki", "lightblue", "pink", "lightgreen", "orange", "silver", "gold")
PROBE_RIGHT = 0.9  # the share of probe photos (with words and without) a CLIP must call right to be trusted


def probe_photos(size: int = 224, seed: int = 0) -> tuple[list[Image.Image], list[bool]]:
    """Plain backgrounds, each once bare and once with a word drawn large in black: (photos, shows text)."""
    rng = random.Random(seed)
    photos, texts = [], []
    for word, colour in zip(PROBE_WORDS, PROBE_COLOURS):
        bare = Image.new("RGB", (size, size), colour)
        written = bare.copy()
        font = ImageFont.load_default(size=size // 6)
        ImageDraw.Draw(written).text(
            (rng.randint(4, size // 6), rng.randint(size // 4, size // 2)), word, "black", font
        )
        photos += [bare, written]
        texts += [False, True]
    return photos, texts


class WritingCheck:
    """CLIP's zero-shot "with text" against "without", for a CLIP that passed the probe (`trusted`)."""

    def __init__(self, encoder) -> None:
        self.encoder = encoder
        self._prompts: torch.Tensor | None = None  # (2, D): with text, without
        self._trusted: bool | None = None
        self._lock = threading.Lock()

    def probabilities(self, images: torch.Tensor) -> list[float]:
        """(B, D) normalised image vectors -> the probability that each shows text, whatever the probe said."""
        if self._prompts is None:
            with_text = self.encoder.embed_texts(WITH_TEXT).mean(dim=0)
            without = self.encoder.embed_texts(WITHOUT_TEXT).mean(dim=0)
            self._prompts = F.normalize(torch.stack([with_text, without]), dim=-1)
        prompts = self._prompts.to(images.device)
        return (self.encoder.logit_scale * images.float() @ prompts.T).softmax(dim=-1)[:, 0].tolist()

    @property
    def trusted(self) -> bool:
        """Whether this CLIP calls the probe photos right; measured once."""
        with self._lock:
            if self._trusted is None:
                photos, texts = probe_photos()
                said = [p >= TEXT_LIKELY for p in self.probabilities(self.encoder.embed_images(photos))]
                right = sum(a == b for a, b in zip(said, texts)) / len(texts)
                self._trusted = right >= PROBE_RIGHT
                log.info(
                    "text in photos: CLIP calls %.0f%% of the probe right, %s",
                    100 * right,
                    "noted in captions" if self._trusted else "not noted",
                )
            return self._trusted

    def tags(self, images: torch.Tensor) -> list[Tag | None]:
        """The tag noting text in each photo where it is likely (for a trusted CLIP), else None."""
        if not self.trusted:
            return [None] * len(images)
        return [Tag("text", p, WRITING) if p >= TEXT_LIKELY else None for p in self.probabilities(images)]


__all__ = ["TEXT_LIKELY", "WITHOUT_TEXT", "WITH_TEXT", "WritingCheck", "probe_photos"]
