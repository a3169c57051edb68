"""Every kind of bad image gets its typed, polite error; odd-but-valid images become upright RGB."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from clipchat.errors import BadImage
from vision import ImageLimits, load_image


def encode(image: Image.Image, fmt: str, **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def png_claiming_size(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims `width` x `height`: the shape of a decompression bomb."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty"),
        (b"hello, this is a text file and not a photo", "not_an_image"),
        (b"%PDF-1.4\n1 0 obj<<>>endobj\n", "not_an_image"),
        (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n", "not_an_image"),  # EPS would run Ghostscript
        (encode(Image.new("RGB", (300, 200), "red"), "JPEG")[:400], "corrupt"),
        (encode(Image.new("RGB", (300, 200), "red"), "PNG")[:-30], "corrupt"),
        (png_claiming_size(100_000, 100_000), "too_large"),
    ],
    ids=["empty", "text", "pdf", "eps", "truncated-jpeg", "truncated-png", "decompression-bomb"],
)
def test_bad_images_raise_one_typed_error(data: bytes, reason: str) -> None:
    with pytest.raises(BadImage) as caught:
        load_image(data)
    assert caught.value.reason == reason
    assert caught.value.user_message.endswith((".", "?"))  # a sentence for a person, not a traceback


def test_byte_and_pixel_limits_are_configurable() -> None:
    photo = encode(Image.new("RGB", (400, 300), "blue"), "PNG")
    with pytest.raises(BadImage) as by_bytes:
        load_image(photo, ImageLimits(max_bytes=100))
    assert by_bytes.value.reason == "too_large" and "too big" in by_bytes.value.user_message
    with pytest.raises(BadImage) as by_pixels:
        load_image(photo, ImageLimits(max_pixels=400 * 300 - 1))
    assert by_pixels.value.reason == "too_large" and "too many pixels" in by_pixels.value.user_message
    assert load_image(photo, ImageLimits(max_pixels=400 * 300)).size == (400, 300)


def test_exif_orientation_is_applied() -> None:
    image = Image.new("RGB", (200, 100), "white")
    image.paste((255, 0, 0), (0, 0, 20, 100))  # a red band on the left edge
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    upright = load_image(encode(image, "JPEG", exif=exif.tobytes(), quality=95))
    assert upright.size == (100, 200)
    top_row = np.asarray(upright)[5]
    assert top_row[:, 0].mean() > 200 and top_row[:, 1].mean() < 80  # the band is now along the top


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P"])
def test_transparency_becomes_white(mode: str) -> None:
    image = Image.new("RGBA", (40, 40), (0, 0, 0, 0))
    image.paste((0, 0, 255, 255), (0, 0, 20, 40))
    if mode == "LA":
        image = image.convert("LA")
    elif mode == "P":
        image = image.convert("P", palette=Image.Palette.ADAPTIVE)
        image.info["transparency"] = image.getpixel((30, 20))
        data = encode(image, "PNG", transparency=image.getpixel((30, 20)))
        rgb = load_image(data)
        assert rgb.mode == "RGB" and rgb.getpixel((30, 20)) == (255, 255, 255)
        return
    rgb = load_image(encode(image, "PNG"))
    assert rgb.mode == "RGB"
    assert rgb.getpixel((30, 20)) == (255, 255, 255)  # transparent area, as chat apps show it
    assert rgb.getpixel((5, 20)) != (255, 255, 255)


def test_cmyk_jpeg_becomes_rgb() -> None:
    rgb = load_image(encode(Image.new("CMYK", (32, 32), (0, 255, 255, 0)), "JPEG"))  # pure red in CMYK
    r, g, b = rgb.getpixel((16, 16))
    assert rgb.mode == "RGB" and r > 200 and g < 60 and b < 60


def test_sixteen_bit_greyscale_keeps_its_tones() -> None:
    ramp = (np.arange(64 * 64, dtype=np.uint32).reshape(64, 64) * 16).astype(np.uint16)  # 0 .. 65520
    rgb = load_image(encode(Image.fromarray(ramp), "PNG"))
    pixels = np.asarray(rgb)[..., 0]
    assert rgb.mode == "RGB"
    assert pixels.min() < 10 and pixels.max() > 245 and 100 < pixels.mean() < 155  # not clipped to white


def test_animated_gif_uses_its_first_frame() -> None:
    frames = [Image.new("RGB", (30, 30), colour) for colour in ("red", "green", "blue")]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    r, g, b = load_image(buffer.getvalue()).getpixel((15, 15))
    assert r > 200 and g < 60 and b < 60


def test_webp_and_bmp_load() -> None:
    for fmt in ("WEBP", "BMP"):
        assert load_image(encode(Image.new("RGB", (20, 10), "green"), fmt)).size == (20, 10)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2048))
def test_arbitrary_bytes_never_crash(data: bytes) -> None:
    try:
        image = load_image(data)
    except BadImage:
        return
    assert image.mode == "RGB"


@settings(max_examples=100, deadline=None)
@given(st.integers(min_value=8, max_value=600))
def test_any_truncation_of_a_real_photo_is_handled(cut: int) -> None:
    photo = encode(Image.effect_noise((64, 64), 40).convert("RGB"), "JPEG")
    try:
        assert load_image(photo[:cut]).mode == "RGB"  # JPEG sometimes decodes a prefix; that's fine
    except BadImage as error:
        assert error.reason in ("corrupt", "not_an_image")


def test_large_photos_are_shrunk_but_stay_upright_and_large_enough_for_clip() -> None:
    image = Image.new("RGB", (2400, 1200), "white")
    image.paste((255, 0, 0), (0, 0, 240, 1200))  # a red band on the left edge
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    for data in (encode(image, "JPEG", exif=exif.tobytes(), quality=95), encode(image, "PNG", exif=exif.tobytes())):
        upright = load_image(data)
        assert upright.size[0] < upright.size[1]  # rotated as the phone showed it
        assert 448 <= min(upright.size) < 1200  # shrunk, but never below twice CLIP's 224 pixels
        top_row = np.asarray(upright)[5]
        assert top_row[:, 0].mean() > 200 and top_row[:, 1].mean() < 80


PEAK_SCRIPT = """
import resource, sys
from vision import load_image
data = open(sys.argv[1], "rb").read()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
image = load_image(data)
print(image.mode, image.size[0], image.size[1], (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)
"""


def _crafted(kind: str) -> bytes:
    """Small files that decode to 49 million pixels."""
    side = 7000
    if kind == "grey16":
        return encode(Image.new("I;16", (side, side), 40000), "PNG")
    if kind == "rgba":
        return encode(Image.new("RGBA", (side, side), (10, 200, 30, 128)), "PNG")
    return encode(Image.new("P", (side, side), 3), "PNG", transparency=3)


@pytest.mark.parametrize("kind", ["grey16", "rgba", "palette"])
def test_small_files_that_decode_to_many_pixels_stay_within_a_memory_budget(kind, tmp_path) -> None:
    """A 95 KB 16-bit PNG once peaked at 2.2 GB (float64 at full size), an RGBA one at 1.6 GB."""
    import subprocess
    import sys

    path = tmp_path / f"{kind}.png"
    path.write_bytes(_crafted(kind))
    assert path.stat().st_size < 300_000
    out = subprocess.run([sys.executable, "-c", PEAK_SCRIPT, str(path)], capture_output=True, text=True, check=True)
    mode, width, height, peak_mb = out.stdout.split()
    # one full-size 32-bit plane is 196 MB: decoding needs that much, never several copies
    assert int(peak_mb) < 450, f"{kind}: decoding peaked {peak_mb} MB above the start"
    assert mode == "RGB" and 448 <= min(int(width), int(height)) < 7000
