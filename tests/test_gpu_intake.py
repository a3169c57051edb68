"""JPEG decoding on the device reads photos as Pillow does, and every photo it cannot take still gets Pillow's answer.

The device path runs here with device="cpu" (torchvision's own decoder); on a machine with CUDA the
same checks run on the GPU's decoder.
"""

from __future__ import annotations

import asyncio
import io
import logging

import pytest
import torch
from PIL import Image

from bot.engine import DescribeRequest, LocalModels, ModelFeatures
from clipchat.errors import BadImage, InvalidConfig
from clipchat.metrics import batches_run
from vision import ImageLimits, load_image
from vision.catalog.settings import VisionSettings
from vision.decoding.strategies import DecodingOptions
from vision.intake.device_jpeg import DeferredJpeg, DeviceIntake, describe_photos, device_intake

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA"))]
TELEGRAM_SIDE = 1280  # the long side of the largest photo size Telegram sends


def encode(image: Image.Image, fmt: str = "JPEG", **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def telegram_jpeg(image: Image.Image) -> bytes:
    """The world's 64-pixel photo as Telegram would deliver a camera photo: 1280 pixels, JPEG quality 85.
    Pillow's path then decodes it at half size (`draft`) and the device at full size: resize noise included."""
    return encode(image.resize((TELEGRAM_SIDE, TELEGRAM_SIDE), Image.Resampling.BICUBIC), quality=85)


@pytest.fixture(scope="module", params=DEVICES)
def models_and_device(request, world_models, world_dir, cache_dir):
    if request.param == "cpu":
        return world_models, "cpu"
    from vision import load_models

    return load_models(str(world_dir), device="cuda", cache_dir=cache_dir), "cuda"


def pillow_facts(models, photos: list[bytes]) -> list:
    """What the bot does today: load_image and the encoder's Pillow steps per photo, then one batch."""
    return models.describe_pixels(models.encoder.pixels_from([models.encoder.prepare(load_image(p)) for p in photos]))


def device_facts(intake: DeviceIntake, models, photos: list[bytes]) -> list:
    """Each photo through the device path in one batch: PhotoFacts, or the BadImage of the photo that had one
    (at `prepare`, on a worker thread, or at `decode`, on the model thread)."""
    prepared: list = []
    for data in photos:
        try:
            prepared.append(intake.prepare(data))
        except BadImage as error:
            prepared.append(error)
    decodable = [item for item in prepared if not isinstance(item, BadImage)]
    described = iter(describe_photos(models, intake, decodable))
    return [item if isinstance(item, BadImage) else next(described) for item in prepared]


def top_tag(facts) -> str | None:
    return facts.tags[0].label if facts.tags else None


@pytest.mark.parametrize("size", ["native", "telegram"])
def test_device_decoding_gives_pillows_tags_and_captions(models_and_device, heldout, size, figure):
    models, device = models_and_device
    intake = DeviceIntake(models.encoder, device=device)
    photos = [encode(h.image, quality=85) if size == "native" else telegram_jpeg(h.image) for h in heldout]
    assert all(isinstance(intake.screen(data), DeferredJpeg) for data in photos)  # all of them on the device

    pillow, ours = pillow_facts(models, photos), device_facts(intake, models, photos)

    def exact(facts: list) -> float:
        return sum(f.caption == h.scene.caption for f, h in zip(facts, heldout)) / len(heldout)

    same_tags = sum(top_tag(a) == top_tag(b) for a, b in zip(pillow, ours)) / len(heldout)
    same_captions = sum(a.caption == b.caption for a, b in zip(pillow, ours)) / len(heldout)
    figure(f"gpu_intake {device} {size}: exact captions Pillow", exact(pillow))
    figure(f"gpu_intake {device} {size}: exact captions device", exact(ours))
    figure(f"gpu_intake {device} {size}: same top tag", same_tags)
    figure(f"gpu_intake {device} {size}: same caption", same_captions)
    assert abs(exact(ours) - exact(pillow)) <= 0.01  # the acceptance: within 1 point
    assert same_tags >= 0.99, f"top tags differ on {1 - same_tags:.1%} of the photos"


def cmyk_jpeg(image: Image.Image) -> bytes:
    return encode(image.resize((640, 640)).convert("CMYK"), quality=90)


def marked(image: Image.Image) -> Image.Image:
    """640 pixels, with a red band down the left edge: which way up it stands shows."""
    image = image.resize((640, 640))
    image.paste((255, 0, 0), (0, 0, 96, 640))
    return image


def rotated_jpeg(image: Image.Image) -> bytes:
    """Stored lying on its side, with EXIF saying how to stand it up (as phones do)."""
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    return encode(image.transpose(Image.Transpose.ROTATE_90), exif=exif.tobytes(), quality=90)


def bogus_huffman_jpeg(image: Image.Image) -> bytes:
    """A header that reads fine, and a Huffman table no decoder accepts: it fails only when decoded."""
    data = bytearray(encode(image.resize((640, 640)), quality=90))
    table = data.find(b"\xff\xc4")
    data[table + 5 : table + 21] = b"\xff" * 16  # far more codes than 256
    return bytes(data)


@pytest.mark.parametrize("device", DEVICES)
def test_photos_the_device_cannot_take_get_pillows_answer_in_the_same_batch(world_models, understood, device):
    models = world_models
    intake = DeviceIntake(models.encoder, device=device)
    good, other = understood[0], understood[1]
    truncated = telegram_jpeg(other.image)
    cases = {  # name: (bytes, what the header check should say)
        "good": (telegram_jpeg(good.image), DeferredJpeg),
        "png": (encode(other.image.resize((640, 640)), "PNG"), "not a JPEG"),
        "cmyk": (cmyk_jpeg(other.image), "JPEG in CMYK"),
        "greyscale": (encode(other.image.resize((640, 640)).convert("L"), quality=90), "JPEG in L"),
        "exif_rotated": (rotated_jpeg(marked(other.image)), "EXIF orientation 6"),
        "truncated": (truncated[: len(truncated) // 2], "no end-of-image marker"),
        "bogus_huffman": (bogus_huffman_jpeg(other.image), DeferredJpeg),
        "good_again": (telegram_jpeg(other.image), DeferredJpeg),
    }
    for name, (data, expected) in cases.items():
        screened = intake.screen(data)
        assert isinstance(screened, DeferredJpeg) if expected is DeferredJpeg else screened.startswith(expected), name

    results = dict(zip(cases, device_facts(intake, models, [data for data, _ in cases.values()])))

    assert results["good"].caption == good.scene.caption
    assert results["good_again"].caption == other.scene.caption
    for name in ("truncated", "bogus_huffman"):  # refused as Pillow refuses them: politely, and alone
        assert isinstance(results[name], BadImage) and results[name].reason == "corrupt", name
        with pytest.raises(BadImage):
            load_image(cases[name][0])
    for name in ("png", "cmyk", "greyscale", "exif_rotated"):  # exactly what the Pillow path makes of them
        [expected] = pillow_facts(models, [cases[name][0]])
        assert results[name].caption == expected.caption, name
        assert top_tag(results[name]) == top_tag(expected), name
    # the photo stood upright, as Pillow stands it, not lying on its side
    upright, sideways = marked(other.image), marked(other.image).transpose(Image.Transpose.ROTATE_90)
    [rotated, upright, sideways] = intake.decode(
        [
            intake.prepare(cases["exif_rotated"][0]),
            intake.prepare(encode(upright, quality=90)),
            intake.prepare(encode(sideways, quality=90)),
        ]
    )
    assert (rotated.float() - upright.float()).abs().mean() < 3 < (rotated.float() - sideways.float()).abs().mean()


def test_limits_are_checked_from_the_header_before_anything_is_decoded(world_models):
    photo = encode(Image.new("RGB", (400, 300), "blue"), quality=90)
    by_pixels = DeviceIntake(world_models.encoder, ImageLimits(max_pixels=400 * 300 - 1), device="cpu")
    assert by_pixels.screen(photo) == "over the pixel limit"
    with pytest.raises(BadImage) as refused:
        by_pixels.prepare(photo)
    assert refused.value.reason == "too_large" and "too many pixels" in refused.value.user_message
    by_bytes = DeviceIntake(world_models.encoder, ImageLimits(max_bytes=len(photo) - 1), device="cpu")
    with pytest.raises(BadImage) as refused:
        by_bytes.prepare(photo)
    assert refused.value.reason == "too_large"
    small_batches = DeviceIntake(world_models.encoder, device="cpu", batch_pixels=400 * 300 - 1)
    assert small_batches.screen(photo) == "too large for one device batch"  # Pillow's draft takes those
    assert isinstance(small_batches.prepare(photo), torch.Tensor)
    assert isinstance(DeviceIntake(world_models.encoder, device="cpu").prepare(photo), DeferredJpeg)


def test_device_decoding_is_only_chosen_for_cuda_models(world_models):
    assert world_models.encoder.device.type == "cpu"
    assert device_intake(world_models.encoder) is None  # CPU hosts keep Pillow with draft() and reduce()


async def test_the_bot_decodes_on_the_device_and_refuses_only_the_bad_photo_of_a_batch(world_models, understood):
    """The bot's own path (LocalModels over a ModelFeatures with a device intake, as CLIPCHAT_JPEG_ON_DEVICE
    makes on a GPU): three people's photos share a batch, two are described as Pillow describes them, and
    the one whose data is damaged past its header gets the polite refusal, alone."""
    photos = [
        telegram_jpeg(understood[0].image),
        encode(understood[1].image.resize((640, 640)), "PNG"),
        bogus_huffman_jpeg(understood[2].image),
    ]
    local = LocalModels(
        ModelFeatures(world_models, intake=DeviceIntake(world_models.encoder, device="cpu")), max_wait=10, timeout=60
    )  # a batch waits only while photos are still being read
    before = batches_run("describe")
    try:
        good, png, bad = await asyncio.gather(
            *(local.describe(DescribeRequest(data)) for data in photos), return_exceptions=True
        )
        shared = batches_run("describe").since(before)
        assert (shared.count, shared.requests) == (1, 3)
    finally:
        await local.close()
    assert good.caption == understood[0].scene.caption
    [expected] = pillow_facts(world_models, photos[1:2])
    assert (png.caption, top_tag(png)) == (expected.caption, top_tag(expected))
    assert isinstance(bad, BadImage) and bad.reason == "corrupt"


def test_the_gpu_switches_are_left_off_with_a_warning_on_a_cpu(world_models, caplog):
    settings = VisionSettings(cuda_graphs=True, jpeg_on_device=True)
    with caplog.at_level(logging.WARNING):
        features = ModelFeatures.configured(world_models, settings)
    assert features.intake is None and features.decoding is None  # Pillow's draft and eager decoding, as without them
    assert "CLIPCHAT_CUDA_GRAPHS is on" in caplog.text and "CLIPCHAT_JPEG_ON_DEVICE is on" in caplog.text


def test_decoding_options_the_captioner_refuses_stop_the_models_at_start_up(world_models):
    with pytest.raises(InvalidConfig, match="guided"):
        ModelFeatures(world_models, decoding=DecodingOptions(method="guided"))
