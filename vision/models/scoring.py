"""CLIP similarity put to use: CLIPScore and caption reranking."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .encoder import TextEncoder
from .language_model import Caption

CLIPSCORE_WEIGHT = 2.5  # Hessel et al. 2021: stretches cosines into a 0..1-ish range for ViT-B/32


def clip_score(images: torch.Tensor, texts: torch.Tensor) -> torch.Tensor:
    """CLIPScore of paired rows: (N, D) normalised image and text vectors -> (N,) = 2.5 * max(cos, 0)."""
    return CLIPSCORE_WEIGHT * (images.float() * texts.float().to(images.device)).sum(dim=-1).clamp(min=0)


def rerank(
    encoder: TextEncoder, image: torch.Tensor, candidates: Sequence[Caption], fluency_weight: float = 1.0
) -> list[tuple[Caption, float]]:
    """Order one image's candidate captions, best first, by CLIPScore plus `fluency_weight` x mean log-probability.

    CLIP reads text as a bag of words, so on its own it can prefer a garbled candidate
    that names the right things ("a red a red circle circle"); the language model's
    likelihood keeps the winner a sentence.
    """
    if not candidates:
        return []
    texts = encoder.embed_texts([c.text for c in candidates])
    scores = clip_score(image.expand(len(candidates), -1), texts).cpu()
    scores = scores + fluency_weight * torch.tensor([c.log_prob for c in candidates])
    return sorted(zip(candidates, scores.tolist()), key=lambda pair: pair[1], reverse=True)
