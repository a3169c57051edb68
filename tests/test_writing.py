"""Captions of photos with text say so: CLIP zero-shot, trusted only where CLIP tells text apart.

A tiny open_clip CLIP is trained here, in some seconds, on plain backgrounds with and without words drawn on them
(words and colours the probe never shows), each paired with the check's own phrasings, as a web-trained CLIP pairs
photos of signs with captions quoting them. The check then finds the text in held-out photos, and the caption says
it and offers /read when the answer model reads. The test world's CLIP, which learnt only shapes, fails the probe
and notes text in no photo.
"""

from __future__ import annotations

import colorsys
import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont

from clipchat.facts import PhotoFacts
from clipchat.i18n import english
from dialogue.describe import described
from tests.world.clip_training import CLIP_CONFIG
from vision.models.encoder import load_clip
from vision.models.writing import PROBE_WORDS, WITH_TEXT, WITHOUT_TEXT, WritingCheck

WORDS = ("MILK", "BUS", "HOTEL", "TAXI", "PIZZA", "BANK", "MENU", "ZOO", "RADIO", "FIRE", "GATE", "SHOP")
COLOURS = ("white", "beige", "lavender", "yellow", "tan", "lightgrey", "skyblue", "salmon", "wheat", "plum")


def photo(
    rng: random.Random, words: tuple[str, ...], written: bool, size: int = 224, any_colour: bool = False
) -> Image.Image:
    """A plain background, maybe with a word on it; `any_colour`: any light colour (of every hue and saturation,
    brightness at least 0.75, so dark letters stay legible) rather than a named one."""
    light = colorsys.hsv_to_rgb(rng.random(), rng.random(), rng.uniform(0.75, 1.0))
    background = tuple(round(255 * channel) for channel in light) if any_colour else rng.choice(COLOURS)
    image = Image.new("RGB", (size, size), background)
    if written:
        font = ImageFont.load_default(size=rng.randint(size // 8, size // 5))
        place = (rng.randint(2, size // 4), rng.randint(size // 8, size // 2))
        ImageDraw.Draw(image).text(place, rng.choice(words), rng.choice(("black", "navy", "darkred")), font)
    return image


@pytest.fixture(scope="module")
def reading_clip(tmp_path_factory) -> Path:
    """A tiny CLIP that learnt which photos have words on them: seconds on 2 idle cores."""
    import open_clip
    from safetensors.torch import save_file

    torch.manual_seed(0)
    rng = random.Random(0)
    folder = tmp_path_factory.mktemp("reading-clip")
    (folder / "open_clip_config.json").write_text(json.dumps(CLIP_CONFIG))
    model, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{folder}", load_weights=False)
    tokens = open_clip.get_tokenizer(f"local-dir:{folder}")([*WITH_TEXT, *WITHOUT_TEXT])
    training = WORDS[:8]  # the rest are held out
    shows = [i % 2 == 1 for i in range(256)]
    # Light backgrounds of every hue, as photos of signs come: trained on ten named colours, a CLIP took the
    # probe's unseen light green and orange for text on one CPU's run, and its colour, not the letters, decided
    pool = torch.stack([preprocess(photo(rng, training, written, any_colour=True)) for written in shows])
    truth = torch.tensor([[1.0] * 3 + [0.0] * 3 if written else [0.0] * 3 + [1.0] * 3 for written in shows])
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.05)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=2e-3, total_steps=100, pct_start=0.1)
    model.train()
    for _ in range(100):
        batch = torch.randint(len(pool), (32,))
        images = F.normalize(model.encode_image(pool[batch]), dim=-1)
        texts = F.normalize(model.encode_text(tokens), dim=-1)
        logits = model.logit_scale.exp() * images @ texts.T
        targets = truth[batch] / 3
        loss = -(targets * logits.log_softmax(dim=1)).sum(dim=1).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, 4.6052)
    save_file(model.state_dict(), str(folder / "open_clip_model.safetensors"))
    return folder


def test_a_clip_that_knows_text_finds_it_in_held_out_photos(reading_clip) -> None:
    encoder = load_clip(f"local-dir:{reading_clip}", None, torch.device("cpu"), torch.float32)
    check = WritingCheck(encoder)
    assert check.trusted  # the probe: words and colours it never trained on
    rng = random.Random(1)
    held_words = WORDS[8:] + PROBE_WORDS
    shows = [i % 2 == 1 for i in range(60)]
    vectors = encoder.embed_images([photo(rng, held_words, written) for written in shows])
    found = [tag is not None for tag in check.tags(vectors)]
    right = np.mean([a == b for a, b in zip(found, shows)])
    assert right >= 0.9, right

    # The caption of a photo with text says so, and offers /read when the answer model can read
    written = next(i for i, (a, b) in enumerate(zip(found, shows)) if a and b)
    plain = next(i for i, (a, b) in enumerate(zip(found, shows)) if not a and not b)
    for index, has_text in ((written, True), (plain, False)):
        tags = tuple(tag for tag in check.tags(vectors[index : index + 1]) if tag is not None)
        facts = PhotoFacts("A sign.", tags, vectors[index].numpy(), encoder.identity)
        assert facts.labels == () and facts.shows_text is has_text
        reads, words_only = english(described(facts, reads=True)), english(described(facts, reads=False))
        assert ("/read" in reads) is has_text and "/read" not in words_only
        assert ("text" in words_only) is has_text, words_only


def test_the_world_s_clip_which_never_saw_text_notes_it_in_no_photo(world_models, heldout) -> None:
    assert not world_models.writing.trusted
    facts = world_models.describe([held.image for held in heldout[:8]])
    assert not any(f.shows_text for f in facts)
