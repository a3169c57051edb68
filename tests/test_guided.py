"""Captions with no captioning checkpoint: CLIP-guided decoding over a caption-trained GPT-2."""

from __future__ import annotations

import pytest

from clipchat.errors import InvalidConfig
from tests.conftest import attribute_accuracy, by_split
from vision import DecodingOptions


def test_guided_captions_name_the_colour_and_shape(guided_models, heldout, figure) -> None:
    sample = heldout[:120]
    captions = {h.path: d.caption for h, d in zip(sample, guided_models.describe([h.image for h in sample]))}
    right = by_split(sample, lambda h: f"{h.scene.colour} {h.scene.shape}" in captions[h.path])
    exact = by_split(sample, lambda h: captions[h.path] == h.scene.caption)
    attributes = by_split(sample, lambda h: attribute_accuracy(captions[h.path], h.scene))
    for split in right:
        figure(f"guided captions naming colour and shape, {split} combinations", right[split])
        figure(f"guided captions exactly right, {split} combinations", exact[split])
        figure(f"guided captions, attributes right, {split} combinations", attributes[split])
    assert right["seen"] >= 0.60 and attributes["unseen"] >= 0.90, (right, attributes)


def test_guided_captions_do_not_repeat_themselves(guided_models, heldout) -> None:
    for description in guided_models.describe([h.image for h in heldout[:20]]):
        words = description.caption.rstrip(".").split()
        assert len(words) <= 12 and description.caption.endswith(".")
        assert all(words[i] != words[i + 1] for i in range(len(words) - 1))


def test_the_image_steers_the_words(guided_models, heldout) -> None:
    """With the image's weight at zero, the caption no longer follows the picture."""
    sample = heldout[:40]
    raw = guided_models.encoder.embed_images([h.image for h in sample], normalize=False)
    blind = guided_models.caption(raw, DecodingOptions(method="guided", guided_beta=0.0))
    seeing = guided_models.caption(raw, DecodingOptions(method="guided"))

    def right(captions):
        return sum(f"{h.scene.colour} {h.scene.shape}" in c[0].text for c, h in zip(captions, sample))

    assert right(seeing) >= right(blind) + 15


def test_options_without_a_method_decode_the_captioners_own_way(guided_models, world_models, heldout) -> None:
    raw = guided_models.encoder.embed_images([h.image for h in heldout[:4]], normalize=False)
    short = DecodingOptions(max_tokens=12)
    assert guided_models.caption(raw, short) == guided_models.caption(
        raw, DecodingOptions(method="guided", max_tokens=12)
    )
    assert world_models.caption(raw, short) == world_models.caption(
        raw, DecodingOptions(method="greedy", max_tokens=12)
    )


def test_guided_mode_refuses_checkpoint_only_methods(guided_models, heldout) -> None:
    with pytest.raises(InvalidConfig, match="only guided decoding"):
        guided_models.describe([heldout[0].image], DecodingOptions(method="beam"))
