"""The synthetic world: one coloured shape of a given size on a background.

Every scene is fully described by four attributes, so a caption is either
exactly right or wrong, and the tests can score models without judgement.
"""

from __future__ import annotations

import itertools
import math
import random
from dataclasses import dataclass

from PIL import Image, ImageDraw, ImageFilter

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (215, 35, 35),
    "green": (35, 165, 55),
    "blue": (35, 75, 215),
    "yellow": (240, 210, 30),
    "purple": (135, 50, 175),
    "orange": (245, 135, 25),
}
SHAPES = ("circle", "square", "triangle", "star", "cross")
SIZES = ("small", "large")
BACKGROUNDS = ("white", "black", "gray", "striped")
ATTRIBUTES = ("size", "colour", "shape", "background")

IMAGE_SIZE = 64
_SUPERSAMPLE = 4  # draw at 4x and downsample, so edges are anti-aliased like a photo


@dataclass(frozen=True)
class Scene:
    size: str
    colour: str
    shape: str
    background: str

    @property
    def caption(self) -> str:
        return describe(size=self.size, colour=self.colour, shape=self.shape, background=self.background) + "."

    def attributes(self) -> dict[str, str]:
        return {"size": self.size, "colour": self.colour, "shape": self.shape, "background": self.background}


def all_scenes() -> list[Scene]:
    """Every combination of attributes: 2 * 6 * 5 * 4 = 240 distinct scenes."""
    return [Scene(*combo) for combo in itertools.product(SIZES, COLOURS, SHAPES, BACKGROUNDS)]


def compositional_split(unseen_fraction: float = 0.2, seed: int = 3) -> tuple[list[Scene], list[Scene]]:
    """(seen, unseen): about a fifth of the attribute combinations never reach any training step, while
    every value of every attribute stays seen, so held-out photos of them test composition, not memory."""
    scenes = all_scenes()
    unseen = random.Random(seed).sample(scenes, round(unseen_fraction * len(scenes)))
    seen = [s for s in scenes if s not in unseen]
    for attribute in ("size", "colour", "shape", "background"):
        assert {getattr(s, attribute) for s in seen} == {getattr(s, attribute) for s in scenes}, attribute
    return seen, unseen


def describe(
    size: str | None = None, colour: str | None = None, shape: str | None = None, background: str | None = None
) -> str:
    """A phrase naming some attributes, in the fixed caption word order.

    >>> describe(colour="red", shape="circle")
    'a red circle'
    """
    words = [w for w in (size, colour) if w]
    noun = shape or "shape"
    if not words and not shape:
        return f"a {background} background" if background else "a shape"
    phrase = " ".join(["a", *words, noun])
    if background:
        phrase += f" on a {background} background"
    return phrase


def render(scene: Scene, rng: random.Random) -> Image.Image:
    """Draw the scene with random position, size jitter, rotation and noise."""
    s = IMAGE_SIZE * _SUPERSAMPLE
    image, draw = canvas(scene.background, s)
    radius_px = (rng.uniform(10, 12.5) if scene.size == "small" else rng.uniform(19, 24)) * _SUPERSAMPLE
    # Subjects sit near the centre, as in most photos; the jitter keeps every render different.
    jitter = 8 * _SUPERSAMPLE
    cx, cy = s / 2 + rng.uniform(-jitter, jitter), s / 2 + rng.uniform(-jitter, jitter)
    angle = rng.uniform(-0.2, 0.2)
    fill = tuple(max(0, min(255, c + rng.randint(-20, 20))) for c in COLOURS[scene.colour])
    _draw_shape(draw, scene.shape, cx, cy, radius_px, angle, fill)
    image = image.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.LANCZOS)
    if rng.random() < 0.5:
        image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.1, 0.6)))
    return image


def canvas(background: str, side: int) -> tuple[Image.Image, ImageDraw.ImageDraw]:
    """A square of `side` pixels painted with `background`, and a pen to draw on it."""
    image = Image.new("RGB", (side, side), _background_fill(background))
    draw = ImageDraw.Draw(image)
    if background == "striped":
        step = side // 8
        for x in range(0, side, step):
            draw.rectangle([x, 0, x + step // 2, side], fill=(170, 170, 170))
    return image, draw


def _background_fill(background: str) -> tuple[int, int, int]:
    return {"white": (245, 245, 245), "black": (15, 15, 15), "gray": (120, 120, 120), "striped": (245, 245, 245)}[
        background
    ]


def _draw_shape(
    draw: ImageDraw.ImageDraw, shape: str, cx: float, cy: float, r: float, angle: float, fill: tuple[int, ...]
) -> None:
    def polygon(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
        cos, sin = math.cos(angle), math.sin(angle)
        return [(cx + x * cos - y * sin, cy + x * sin + y * cos) for x, y in points]

    if shape == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
    elif shape == "square":
        h = r * 0.85
        draw.polygon(polygon([(-h, -h), (h, -h), (h, h), (-h, h)]), fill=fill)
    elif shape == "triangle":
        draw.polygon(polygon([(0, -r), (r * 0.95, r * 0.7), (-r * 0.95, r * 0.7)]), fill=fill)
    elif shape == "star":
        points = []
        for i in range(10):
            radius = r if i % 2 == 0 else r * 0.42
            theta = -math.pi / 2 + i * math.pi / 5
            points.append((radius * math.cos(theta), radius * math.sin(theta)))
        draw.polygon(polygon(points), fill=fill)
    elif shape == "cross":
        w = r * 0.33
        draw.polygon(
            polygon(
                [
                    (-w, -r),
                    (w, -r),
                    (w, -w),
                    (r, -w),
                    (r, w),
                    (w, w),
                    (w, r),
                    (-w, r),
                    (-w, w),
                    (-r, w),
                    (-r, -w),
                    (-w, -w),
                ]
            ),
            fill=fill,
        )
    else:
        raise ValueError(f"unknown shape {shape!r}")
