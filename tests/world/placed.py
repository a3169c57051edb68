"""Photos with facts no caption states: where the shape stands, and a short word on a label below it.

The world's captions name size, colour, shape and background; these photos add two facts only a model that sees
the pixels can answer: the shape's position (left, centre, right) and, on some photos, a word. They are rendered
larger (96 px) than the captioned world's photos so that letters stay legible, into splits of their own, so that
every figure measured on the first world is unchanged.

A word is never shown on the held-out scenes it was trained with: `training_words(scene)` and
`heldout_words(scene)` split the words per scene, so reading one right means reading the letters, not
remembering which word went with a red star.
"""

from __future__ import annotations

import io
import json
import random
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageFilter, ImageFont

from .scenes import COLOURS, Scene, _draw_shape, all_scenes, canvas

PLACED_SIZE = 96
POSITIONS = ("left", "centre", "right")
WORDS = ("SUN", "MOON", "STOP", "OPEN", "SALE", "EXIT", "CAKE", "FISH", "BIRD", "RAIN", "SNOW", "TREE")
_CENTRES = {"left": 0.21, "centre": 0.5, "right": 0.79}  # of the width; large shapes stay inside the frame
_SUPERSAMPLE = 4
_FONT_PX = 20  # at the photo's size: four capitals fill about two thirds of its width


@dataclass(frozen=True)
class Placed:
    scene: Scene
    position: str
    text: str | None  # the word on the label, or None: no label at all

    def attributes(self) -> dict[str, str | None]:
        return {**self.scene.attributes(), "position": self.position, "text": self.text}


def training_words(scene: Scene) -> tuple[str, ...]:
    """The words training shows on `scene`: three in four of them."""
    offset = all_scenes().index(scene)
    return tuple(w for i, w in enumerate(WORDS) if (i + offset) % 4)


def heldout_words(scene: Scene) -> tuple[str, ...]:
    """The words no training photo of `scene` carries: each is trained on other scenes."""
    kept = set(training_words(scene))
    return tuple(w for w in WORDS if w not in kept)


@dataclass(frozen=True)
class Layout:
    """Where things were drawn, in the photo's pixels: the shape's centre and radius, the label's box."""

    centre: tuple[float, float]
    radius: float
    label: tuple[float, float, float, float] | None
    letters: tuple[tuple[str, float, float], ...] = ()  # each letter of the word and its span across


def render_placed(placed: Placed, rng: random.Random) -> Image.Image:
    """Draw the shape at its position, the label under it when there is a word, with jitter, blur and noise."""
    return render_with_layout(placed, rng)[0]


def render_with_layout(placed: Placed, rng: random.Random) -> tuple[Image.Image, Layout]:
    scene = placed.scene
    s = PLACED_SIZE * _SUPERSAMPLE
    image, draw = canvas(scene.background, s)
    radius = (rng.uniform(7.5, 9.5) if scene.size == "small" else rng.uniform(14, 17)) * _SUPERSAMPLE
    cx = (_CENTRES[placed.position] * PLACED_SIZE + rng.uniform(-3, 3)) * _SUPERSAMPLE
    cy = (35 + rng.uniform(-3, 3)) * _SUPERSAMPLE
    fill = tuple(max(0, min(255, c + rng.randint(-20, 20))) for c in COLOURS[scene.colour])
    _draw_shape(draw, scene.shape, cx, cy, radius, rng.uniform(-0.2, 0.2), fill)
    box = None
    letters: list[tuple[str, float, float]] = []
    if placed.text:
        font = ImageFont.load_default(size=_FONT_PX * _SUPERSAMPLE)
        left, top, right, bottom = draw.textbbox((0, 0), placed.text, font=font)
        x = (s - (right - left)) / 2 + rng.uniform(-4, 4) * _SUPERSAMPLE - left
        y = 78 * _SUPERSAMPLE - (bottom - top) / 2 + rng.uniform(-2, 2) * _SUPERSAMPLE - top
        pad = 3 * _SUPERSAMPLE
        box = (x + left - pad, y + top - pad, x + right + pad, y + bottom + pad)
        draw.rectangle(box, fill=(250, 250, 240))
        draw.text((x, y), placed.text, font=font, fill=(20, 20, 20))
        for i, letter in enumerate(placed.text):
            start, end = x + font.getlength(placed.text[:i]), x + font.getlength(placed.text[: i + 1])
            letters.append((letter, start / _SUPERSAMPLE, end / _SUPERSAMPLE))
    image = image.resize((PLACED_SIZE, PLACED_SIZE), Image.Resampling.LANCZOS)
    if rng.random() < 0.5:
        image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.1, 0.5)))
    if rng.random() < 0.5:  # the bot hands a model server or a VLM a JPEG of the photo
        encoded = io.BytesIO()
        image.save(encoded, "JPEG", quality=85)
        image = Image.open(io.BytesIO(encoded.getvalue())).convert("RGB")
    label = tuple(v / _SUPERSAMPLE for v in box) if box else None
    centre = (cx / _SUPERSAMPLE, cy / _SUPERSAMPLE)
    return image, Layout(centre, radius / _SUPERSAMPLE, label, tuple(letters))  # type: ignore[arg-type]


def training_photos(scenes: list[Scene], count: int, seed: int) -> list[Placed]:
    """`count` photos of the seen scenes: every position, a trained word on about half of them."""
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        scene = rng.choice(scenes)
        text = rng.choice(training_words(scene)) if rng.random() < 0.5 else None
        out.append(Placed(scene, rng.choice(POSITIONS), text))
    return out


def heldout_photos(seen: list[Scene], seed: int, per_scene: int = 2) -> list[tuple[Placed, bool]]:
    """(photo, seen combination) for every scene: one with a held-out word, the rest without."""
    rng = random.Random(seed)
    out = []
    for scene in all_scenes():
        for index in range(per_scene):
            text = rng.choice(heldout_words(scene)) if index == 0 else None
            out.append((Placed(scene, rng.choice(POSITIONS), text), scene in seen))
    rng.shuffle(out)
    return out


def write_placed_split(directory: Path, photos: list[tuple[Placed, bool]], seed: int) -> Path:
    """PNGs and `captions.jsonl` with every fact (the caption says only what the world's captions say)."""
    rng = random.Random(seed)
    directory.mkdir(parents=True, exist_ok=True)
    lines = []
    for index, (placed, seen) in enumerate(photos):
        name = f"{index:05d}.png"
        render_placed(placed, rng).save(directory / name)
        lines.append(json.dumps({"image": name, "caption": placed.scene.caption, **placed.attributes(), "seen": seen}))
    (directory / "captions.jsonl").write_text("\n".join(lines) + "\n")
    return directory / "captions.jsonl"
