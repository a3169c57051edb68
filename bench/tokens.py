"""Does bfloat16 change the captions? The same weights in two dtypes, token by token."""

from __future__ import annotations

import statistics

import torch

from .pipelines import TOKENS, decode


@torch.inference_mode()
def caption_tokens(models, photos: list[bytes]) -> list[list[int]]:
    """Greedy 20-token captions of `photos`, as token ids."""
    from vision.decoding.strategies import DecodingOptions

    encoder = models.encoder
    pixels = encoder.pixels_from([encoder.prepare(decode(data)) for data in photos])
    raw = encoder.embed_pixels(pixels, normalize=False)  # (N, D)
    return [list(candidates[0].tokens) for candidates in models.caption(raw, DecodingOptions(max_tokens=TOKENS))]


def compare_tokens(reference: list[list[int]], other: list[list[int]]) -> dict:
    """How many captions changed, how many tokens, and where the first change fell."""
    changed = [
        next((i for i, (a, b) in enumerate(zip(x, y)) if a != b), None if len(x) == len(y) else min(len(x), len(y)))
        for x, y in zip(reference, other)
    ]
    positions = sum(max(len(x), len(y)) for x, y in zip(reference, other))
    differing = sum(sum(a != b for a, b in zip(x, y)) + abs(len(x) - len(y)) for x, y in zip(reference, other))
    firsts = [i for i in changed if i is not None]
    return {
        "captions": len(reference),
        "captions_changed": len(firsts) / len(reference),
        "tokens_changed": differing / positions,
        "median_first_change": statistics.median(firsts) if firsts else None,
    }


def same_weights(a, b) -> bool:
    """Whether `b`'s CLIP and captioner hold `a`'s weights, cast to `b`'s dtypes."""
    for left, right in ((a.encoder.model, b.encoder.model), (a.captioner, b.captioner)):
        ours, theirs = left.state_dict(), right.state_dict()
        if ours.keys() != theirs.keys():
            return False
        for key, tensor in ours.items():
            other = theirs[key]
            if tensor.shape != other.shape or not torch.equal(tensor.to(other.dtype), other):
                return False
    return True
