"""Decode a batch of JPEG photos on the models' device: the GPU's JPEG decoder instead of Pillow on the CPU.

    intake = device_intake(models.encoder, limits)   # None on a CPU: Pillow with draft() stays
    prepared = [intake.prepare(data) for data in photos]         # any thread: header checks only
    facts = describe_photos(models, intake, prepared)           # model thread: PhotoFacts or BadImage each

Telegram sends ~1280 px JPEGs, and at large batches Pillow's decoding and resizing on the CPU
took about half of the end-to-end time. Here a worker thread reads only the header, with
intake's limits (bytes and pixels) checked before anything is decoded; a plain RGB JPEG is
then decoded, batched, by `torchvision.io.decode_jpeg` on the device, resized, centre-cropped
and handed to the encoder as the same (H, W, 3) uint8 crops `ClipEncoder.prepare` makes.

Everything else goes through Pillow (`load_image`), one photo at a time, exactly as before:
other formats, greyscale and CMYK JPEGs, EXIF-rotated ones, files without an end-of-image
marker (truncated uploads), photos too large for one device batch, and any photo the device
fails to decode. One bad photo never fails the batch: it gets the usual polite `BadImage`.
"""

from __future__ import annotations

import io
import logging
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial

import torch
from PIL import Image, UnidentifiedImageError

from clipchat.errors import BadImage

from .images import ImageLimits, load_image

log = logging.getLogger(__name__)

JPEG_START, JPEG_END = b"\xff\xd8\xff", b"\xff\xd9"
EXIF_ORIENTATION = 0x0112
# Pixels decoded on the device at once: 64 M is about fifty 1280x960 photos, 200 MB as uint8 and
# 800 MB while they are resized in float32. A larger photo than this goes to Pillow, whose `draft`
# decodes it at a fraction of its size anyway.
BATCH_PIXELS = 2**26


@dataclass(frozen=True)
class DeferredJpeg:
    """A JPEG whose header passed intake's checks, left for the device to decode."""

    data: bytes
    width: int
    height: int


class DeviceIntake:
    """Photos to CLIP's input crops, JPEG decoding and resizing on `device` (the encoder's by default)."""

    def __init__(
        self,
        encoder,
        limits: ImageLimits = ImageLimits(),
        device: str | torch.device | None = None,
        batch_pixels: int = BATCH_PIXELS,
    ) -> None:
        self.encoder = encoder  # a ClipEncoder, or anything with its `preprocess` and `prepare`
        self.limits = limits
        self.device = torch.device(device) if device is not None else encoder.device
        self.batch_pixels = batch_pixels
        self.steps = tensor_steps(encoder.preprocess)  # None: steps we cannot run on tensors, so Pillow for all

    def prepare(self, data: bytes) -> DeferredJpeg | torch.Tensor:
        """Any thread: a plain RGB JPEG within the limits, left for `decode`; any other photo decoded
        and resized with Pillow here, as `ModelFeatures.prepare` does (raising `BadImage` as it does)."""
        screened = self.screen(data)
        if isinstance(screened, DeferredJpeg):
            return screened
        log.debug("Pillow decodes this photo: %s", screened)
        return self.encoder.prepare(load_image(data, self.limits))

    def screen(self, data: bytes) -> DeferredJpeg | str:
        """From the header alone: the photo for the device, or why Pillow should have it instead."""
        if self.steps is None:
            return "the encoder's preprocessing has steps the device path does not know"
        if not data or len(data) > self.limits.max_bytes:
            return "empty or over the byte limit"
        if not data.startswith(JPEG_START):
            return "not a JPEG"
        if not data.endswith(JPEG_END):
            return "no end-of-image marker (truncated, or data after the image)"
        try:
            image = Image.open(io.BytesIO(data), formats=("JPEG",))
        except (
            UnidentifiedImageError,
            Image.DecompressionBombError,
            OSError,
            ValueError,
            SyntaxError,
            EOFError,
        ) as error:
            return f"unreadable JPEG header: {error}"
        with image:
            width, height = image.size
            if image.format != "JPEG" or image.mode != "RGB":
                return f"{image.format} in {image.mode}"  # MPO, greyscale, CMYK: Pillow converts them
            if width * height > self.limits.max_pixels:
                return "over the pixel limit"
            if width * height > self.batch_pixels:
                return "too large for one device batch"
            try:
                orientation = image.getexif().get(EXIF_ORIENTATION, 1)
            except (OSError, ValueError, TypeError, KeyError, SyntaxError) as error:
                return f"unreadable EXIF: {error}"
            if orientation != 1:
                return f"EXIF orientation {orientation}"  # Pillow turns it upright
        return DeferredJpeg(data, width, height)

    def decode(self, prepared: Sequence[DeferredJpeg | torch.Tensor]) -> list[torch.Tensor | BadImage]:
        """Model thread: each photo as an (H, W, 3) uint8 crop on the device, or the `BadImage` Pillow
        raised for it once the device could not decode it."""
        out: list[torch.Tensor | BadImage | None] = [None] * len(prepared)
        deferred = []
        for position, item in enumerate(prepared):
            if isinstance(item, DeferredJpeg):
                deferred.append((position, item))
            else:
                out[position] = item.to(self.device)
        for chunk in self._chunks(deferred):
            decoded = self._decode_jpegs([item for _, item in chunk])
            good = []
            for (position, item), image in zip(chunk, decoded):
                if image is None:
                    out[position] = self._pillow(item.data)
                else:
                    good.append((position, image))
            for position, crop in self._resize_and_crop(good):
                out[position] = crop
        return out  # type: ignore[return-value]  # every position is filled

    def _chunks(self, deferred: list[tuple[int, DeferredJpeg]]) -> Iterator[list[tuple[int, DeferredJpeg]]]:
        chunk: list[tuple[int, DeferredJpeg]] = []
        pixels = 0
        for entry in deferred:
            size = entry[1].width * entry[1].height
            if chunk and pixels + size > self.batch_pixels:
                yield chunk
                chunk, pixels = [], 0
            chunk.append(entry)
            pixels += size
        if chunk:
            yield chunk

    def _decode_jpegs(self, items: list[DeferredJpeg]) -> list[torch.Tensor | None]:
        """(3, H, W) uint8 on the device per photo, None where decoding failed: the whole batch at once,
        and photo by photo only when that fails, to find which ones."""
        from torchvision.io import ImageReadMode, decode_jpeg

        encoded = [torch.frombuffer(bytearray(item.data), dtype=torch.uint8) for item in items]
        try:
            images = decode_jpeg(encoded, mode=ImageReadMode.RGB, device=self.device)
        except (RuntimeError, ValueError) as error:
            if len(items) == 1:
                log.debug("device JPEG decoding failed, Pillow will try: %s", error)
                return [None]
            log.debug("device JPEG decoding of %d photos failed, decoding them one by one: %s", len(items), error)
            return [self._decode_jpegs([item])[0] for item in items]
        checked = []
        for item, image in zip(items, images):
            if tuple(image.shape) != (3, item.height, item.width):
                log.debug(
                    "device decoded %s for a %dx%d JPEG, Pillow will try", tuple(image.shape), item.width, item.height
                )
                image = None
            checked.append(image)
        return checked

    def _resize_and_crop(self, images: list[tuple[int, torch.Tensor]]) -> list[tuple[int, torch.Tensor]]:
        """The encoder's Pillow steps on the device, one batched call per image size."""
        by_size = defaultdict(list)
        for position, image in images:
            by_size[tuple(image.shape)].append((position, image))
        assert self.steps is not None  # screen() leaves no JPEG to the device without them
        out: list[tuple[int, torch.Tensor]] = []
        for group in by_size.values():
            batch = torch.stack([image for _, image in group])
            for step in self.steps:
                batch = step(batch)
            out.extend(zip([position for position, _ in group], batch.permute(0, 2, 3, 1).unbind()))
        return out

    def _pillow(self, data: bytes) -> torch.Tensor | BadImage:
        try:
            return self.encoder.prepare(load_image(data, self.limits)).to(self.device)
        except BadImage as error:
            return error


TensorStep = Callable[[torch.Tensor], torch.Tensor]


def tensor_steps(preprocess) -> list[TensorStep] | None:
    """The Pillow half of a torchvision `Compose` (what runs before ToTensor) as functions of (N, 3, H, W)
    uint8 tensors, or None when it has a step without a tensor equivalent known here."""
    import torchvision.transforms as T
    import torchvision.transforms.v2.functional as F

    steps: list[TensorStep] = []
    for step in getattr(preprocess, "transforms", None) or ():
        name = type(step).__name__
        if name.endswith("ToTensor"):
            return steps
        if isinstance(step, T.Resize):  # what Pillow does: antialiased, rounded back to uint8
            steps.append(
                partial(
                    F.resize, size=step.size, interpolation=step.interpolation, max_size=step.max_size, antialias=True
                )
            )
        elif isinstance(step, T.CenterCrop):
            steps.append(partial(F.center_crop, output_size=step.size))
        elif (name == "MaybeConvertMode" and step.mode == "RGB") or getattr(step, "__name__", "") == "_convert_to_rgb":
            continue  # decoded as RGB already
        else:
            log.info("device JPEG decoding is off: the preprocessing step %r has no tensor equivalent here", step)
            return None
    return None  # no ToTensor: not a pipeline of that shape


def device_intake(encoder, limits: ImageLimits = ImageLimits()) -> DeviceIntake | None:
    """A `DeviceIntake` when the models run on CUDA and their preprocessing allows; None elsewhere, where
    Pillow's `draft` (decoding at a fraction of the size) beats decoding whole JPEGs on the CPU."""
    if encoder.device.type != "cuda":
        return None
    intake = DeviceIntake(encoder, limits)
    return intake if intake.steps is not None else None


def describe_photos(
    models, intake: DeviceIntake, prepared: Sequence[DeferredJpeg | torch.Tensor], options=None
) -> list:
    """Model thread: `VisionModels.describe_pixels` for a batch from `intake.prepare`: one `PhotoFacts` per
    photo, or the `BadImage` for a photo neither the device nor Pillow could decode."""
    decoded = intake.decode(prepared)
    good = [item for item in decoded if isinstance(item, torch.Tensor)]
    facts = iter(models.describe_pixels(models.encoder.pixels_from(good), options) if good else [])
    return [next(facts) if isinstance(item, torch.Tensor) else item for item in decoded]
