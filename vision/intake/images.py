"""Turn untrusted bytes into an RGB Pillow image, or a `BadImage` that says why not.

Every photo comes from a stranger, so decoding is bounded: byte and pixel limits
are checked before pixels are decoded, only raster formats that Pillow decodes
itself are accepted (EPS would run Ghostscript), and every Pillow failure maps
to one typed error with a message a person can act on.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from clipchat.errors import BadImage
from clipchat.i18n import N_

log = logging.getLogger(__name__)

ACCEPTED_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")  # JPEG covers MPO (phone 3D photos)


@dataclass(frozen=True)
class ImageLimits:
    max_bytes: int = 20 * 1024 * 1024  # what the public Bot API lets a bot download
    max_pixels: int = 50_000_000  # a 50 MP camera frame; decoding it needs about 150 MB
    # Photos are shrunk by whole factors, during decoding where the format allows (JPEG), while
    # their shorter side stays at least this: CLIP looks at 224 pixels, and full-size pixels
    # only cost memory (a 7000x7000 PNG converted at full size peaked at 2.2 GB).
    min_side: int = 448


def load_image(data: bytes, limits: ImageLimits = ImageLimits()) -> Image.Image:
    """Decode `data` into an upright RGB image; raise `BadImage` for anything else."""
    if not data:
        raise BadImage("empty", N_("That file is empty. Could you send the photo again?"))
    if len(data) > limits.max_bytes:
        raise BadImage(
            "too_large",
            N_("That file is too big for me: please send an image under {limit_mb} MB."),
            params={"limit_mb": limits.max_bytes // (1024 * 1024)},
            detail=f"{len(data)} bytes > {limits.max_bytes}",
        )
    try:
        image = Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS)
    except UnidentifiedImageError as error:
        raise BadImage(
            "not_an_image",
            N_("I can only look at images (JPEG, PNG, WebP, GIF, BMP or TIFF), and this file isn't one I can read."),
            detail=str(error),
        ) from error
    except Image.DecompressionBombError as error:
        raise _too_many_pixels(str(error)) from error
    except (OSError, ValueError, SyntaxError, EOFError) as error:
        raise _damaged(str(error)) from error
    width, height = image.size
    if width * height > limits.max_pixels:
        raise _too_many_pixels(f"{width}x{height} > {limits.max_pixels} pixels")
    if getattr(image, "is_animated", False):
        image.seek(0)  # an animation is described by its first frame
    factor = min(width, height) // limits.min_side
    try:
        if factor >= 2:
            image.draft(image.mode, (width // factor, height // factor))  # JPEG decodes at 1/2, 1/4 or 1/8
        image.load()
    except Image.DecompressionBombError as error:
        raise _too_many_pixels(str(error)) from error
    except (OSError, ValueError, SyntaxError, EOFError) as error:
        # Truncated data, broken chunks, or compressed text chunks that would expand without bound.
        raise _damaged(f"{image.format}: {error}") from error
    return to_rgb(_upright(_shrink(image, limits.min_side)))


# Bytes per pixel while a mode is decoded at full size and, before `_shrink` reduces it, converted
# (16-bit greyscale to 32-bit, palettes to RGBA): what one photo briefly takes, measured as resident
# memory with its allocator's slack (a 49 MP 16-bit PNG: 420 MB, not the 294 MB of its two planes).
_FULL_SIZE_BYTES = {
    "I;16": 8,
    "I;16B": 8,
    "I;16L": 8,
    "I;16N": 8,
    "I": 10,
    "F": 10,
    "P": 6,
    "1": 6,
    "L": 2,
    "LA": 3,
    "RGB": 5,
    "RGBA": 6,
    "CMYK": 6,
    "YCbCr": 5,
}


def decode_cost(data: bytes, limits: ImageLimits = ImageLimits()) -> int:
    """About how many bytes `load_image(data)` takes at its peak, from the header alone (no decoding):
    what a memory budget for photos in flight charges. A file whose header cannot be read costs its size."""
    try:
        image = Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS)
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError, SyntaxError, EOFError):
        return len(data)
    width, height = image.size
    if width * height > limits.max_pixels:
        return len(data)  # refused before decoding
    pixels = width * height
    if image.format == "JPEG":  # `draft` decodes at 1/2, 1/4 or 1/8 of each side
        factor = min(8, min(width, height) // limits.min_side)
        scale = 8 if factor >= 8 else 4 if factor >= 4 else 2 if factor >= 2 else 1
        pixels //= scale * scale
    return len(data) + pixels * _FULL_SIZE_BYTES.get(image.mode, 4)


def _shrink(image: Image.Image, min_side: int) -> Image.Image:
    """Average whole blocks of pixels away while the shorter side stays at least `min_side`,
    before any conversion multiplies the bytes per pixel."""
    factor = min(image.size) // min_side
    if factor < 2:
        return image
    if image.mode.startswith("I;16"):
        image = image.convert("I")  # `reduce` reads 32-bit integers, not 16-bit ones
    elif image.mode in ("P", "1"):
        image = image.convert("RGBA" if image.mode == "P" and "transparency" in image.info else "RGB")
    reduced = image.reduce(factor)
    reduced.info = image.info  # keep the EXIF orientation for `_upright`
    return reduced


def _damaged(detail: str) -> BadImage:
    return BadImage(
        "corrupt", N_("That image seems to be damaged, so I couldn't open it. Could you send it again?"), detail=detail
    )


def _too_many_pixels(detail: str) -> BadImage:
    return BadImage(
        "too_large", N_("That image has too many pixels for me. Please send a smaller version."), detail=detail
    )


def _upright(image: Image.Image) -> Image.Image:
    """Apply the EXIF orientation, so that a phone photo is not described lying on its side."""
    try:
        return ImageOps.exif_transpose(image)
    except (OSError, ValueError, TypeError, KeyError, SyntaxError) as error:
        # Broken EXIF should not cost the user their photo: describe it as stored.
        log.warning("ignoring unreadable EXIF orientation: %s", error)
        return image


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB; transparent areas become white, as chat apps show them."""
    if image.mode == "RGB":
        return image
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        return _high_depth_to_rgb(image)
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(canvas, rgba).convert("RGB")
    return image.convert("RGB")


def _high_depth_to_rgb(image: Image.Image) -> Image.Image:
    """Scale 16-bit, 32-bit and float greyscale to 0..255 instead of clipping everything to white.

    In float32: float64 doubled the memory of the largest array in the bot for no visible difference.
    """
    pixels = np.asarray(image).astype(np.float32, copy=False)
    if image.mode.startswith("I;16") or (
        image.mode == "I" and pixels.max(initial=0) <= 65535 and pixels.min(initial=0) >= 0
    ):
        scaled = pixels / np.float32(257.0)
    else:
        low, high = float(pixels.min(initial=0)), float(pixels.max(initial=0))
        scaled = (pixels - low) * np.float32(255.0 / (high - low)) if high > low else np.zeros_like(pixels)
    return Image.fromarray(np.clip(np.rint(scaled), 0, 255).astype(np.uint8), mode="L").convert("RGB")
