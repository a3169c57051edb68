"""Every model feature, written once, as a batched call on the model thread (`ModelFeatures`).

Each method takes a batch of requests and returns one result per request, in order.
Only `prepare` may run on another thread (it decodes a photo with Pillow, which releases the
GIL, or with JPEG decoding on the device checks a JPEG's header only); everything else runs on
the one thread the models were loaded on.

On a GPU the operator may turn on CUDA graphs (`CLIPCHAT_CUDA_GRAPHS`: greedy captions and
CLIP's tower replayed at fixed batch sizes) and JPEG decoding on the device
(`CLIPCHAT_JPEG_ON_DEVICE`: `prepare` then reads only the header, and `describe` decodes the
batch); `ModelFeatures.configured` reads both.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

import numpy as np
import torch
from PIL import Image

from clipchat.errors import BadImage, InvalidConfig
from clipchat.facts import PhotoFacts
from clipchat.metrics import STAGE_SECONDS
from dialogue import Answer, Drafts, OpenQuestion, answer, answer_mood, checked, route
from vision import ImageLimits, VisionModels, load_image
from vision.catalog.settings import VisionSettings
from vision.decoding.strategies import DecodingOptions
from vision.intake.device_jpeg import DeferredJpeg, DeviceIntake, describe_photos, device_intake

from .api import (
    AnswerRequest,
    CheckRequest,
    ClassifyRequest,
    DescribeRequest,
    LabelScores,
    MoodRequest,
    TextRequest,
    TextVector,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Drafting:
    """A question whose answer is shown as it is written: in this process only (`drafts` is called on the
    model thread), so no transport sends it elsewhere."""

    request: AnswerRequest
    drafts: Drafts


class ModelFeatures:
    def __init__(
        self,
        models: VisionModels,
        limits: ImageLimits = ImageLimits(),
        decoding: DecodingOptions | None = None,
        intake: DeviceIntake | None = None,
    ) -> None:
        self.models = models
        self.limits = limits
        if decoding is not None:  # options this captioner refuses fail here, at start-up, not on every photo
            method = decoding.for_captioner(models.captioner).method
            if method is not None and method not in models.captioner.methods:
                raise InvalidConfig(models.captioner.refusal(method))
        self.decoding = decoding  # None: the captioner's own method and defaults
        self.intake = intake  # None: Pillow decodes every photo in `prepare`
        self.identity = models.encoder.identity
        self._forgotten = 0  # the count of /forgets the tagger's label sets were cached under (see `Models`)

    @classmethod
    def configured(cls, models: VisionModels, settings: VisionSettings) -> ModelFeatures:
        """The features as the operator's settings ask; the GPU-only switches are logged and left off elsewhere
        (on a CPU, padding to fixed batch sizes only costs time, and Pillow's draft decoding beats torchvision's)."""
        limits, on_gpu = settings.image_limits(), models.encoder.device.type == "cuda"
        decoding = intake = None
        if settings.cuda_graphs and on_gpu:
            if "greedy" not in models.captioner.methods:
                raise InvalidConfig(
                    f"CLIPCHAT_CUDA_GRAPHS needs a captioner that decodes greedily; the model set "
                    f"{models.model_set.name!r} has {', '.join(models.captioner.methods)}. "
                    "Turn it off or choose a set with a trained captioner."
                )
            decoding = DecodingOptions(method="greedy", graphs=True)
        if settings.jpeg_on_device and on_gpu:
            intake = device_intake(models.encoder, limits)  # None where CLIP's preprocessing has no tensor form
        elsewhere = f"the models run on {models.encoder.device}"
        if settings.cuda_graphs and decoding is None:
            log.warning("CLIPCHAT_CUDA_GRAPHS is on, but %s: left off", elsewhere)
        if settings.jpeg_on_device and intake is None:
            log.warning(
                "CLIPCHAT_JPEG_ON_DEVICE is on, but %s: left off",
                "CLIP's preprocessing has a step with no tensor form" if on_gpu else elsewhere,
            )
        return cls(models, limits, decoding, intake)

    def prepare(self, request: DescribeRequest) -> torch.Tensor | DeferredJpeg:
        """Any thread: decode, check and resize one photo for CLIP; a bad file fails here, alone. With
        JPEG decoding on the device, a plain JPEG only has its header checked here, and `describe` decodes it."""
        with STAGE_SECONDS.labels("decode").time():
            if self.intake is not None:
                return self.intake.prepare(request.data)
            return self.models.encoder.prepare(load_image(request.data, self.limits))

    @torch.inference_mode()
    def describe(self, prepared: Sequence[torch.Tensor | DeferredJpeg]) -> list[PhotoFacts | BadImage]:
        """One PhotoFacts per photo; with device decoding, the `BadImage` of a photo no decoder could read
        (the batcher hands it to that photo's caller alone)."""
        if self.intake is not None:
            return describe_photos(self.models, self.intake, prepared, self.decoding)
        # without device decoding, `prepare` made tensors: (N, 3, H, W); normalising is a torch op
        pixels = self.models.encoder.pixels_from(cast(Sequence[torch.Tensor], prepared))
        return [*self.models.describe_pixels(pixels, self.decoding)]

    @property
    def sees_images(self) -> bool:
        """Whether the answer model reads the question's photo (`AnswerRequest.photo`)."""
        return self.models.answerer.sees_images

    def cached_entries(self) -> int:
        """/tags label sets the models hold (for metrics and tests)."""
        tagger = self.models.tagger
        return tagger.cached_label_sets if tagger is not None else 0

    def forget_caches(self) -> int:
        """Model thread: drop what people typed that the models keep (label sets); returns how many."""
        tagger = self.models.tagger
        return tagger.forget_label_sets() if tagger is not None else 0

    def _settle(self, forgotten: int) -> None:
        """Model thread: before answering a request asked under another count of /forgets than the label
        sets were cached under, drop them: someone was forgotten, here or in another process."""
        if forgotten != self._forgotten:
            self.forget_caches()
            self._forgotten = forgotten

    @torch.inference_mode()
    def embed_text(self, requests: Sequence[TextRequest]) -> list[TextVector]:
        vectors = self.models.encoder.embed_texts([r.text for r in requests]).float().cpu().numpy()  # (N, D)
        return [TextVector(vector) for vector in vectors]

    @torch.inference_mode()
    def classify(self, requests: Sequence[ClassifyRequest]) -> list[LabelScores]:
        results = []
        for r in requests:
            self._settle(r.forgotten)
            results.append(
                LabelScores(tuple(self.models.tagger.classify(self._vector(r.embedding)[None], list(r.labels))[0]))
            )
        return results

    @torch.inference_mode()
    def answer(self, requests: Sequence[AnswerRequest | Drafting]) -> list[Answer]:
        """Each has its own prompt; a `Drafting` one's language model answer goes to its `drafts` as it is written
        (one feature, so one queue and one set of metrics, `answer`, whichever way a question came)."""
        return [
            self._answer(r) if isinstance(r, AnswerRequest) else self._answer(r.request, r.drafts) for r in requests
        ]

    def _answer(self, request: AnswerRequest, drafts: Drafts | None = None) -> Answer:
        self._settle(request.forgotten)  # answers weigh label sets made of the question's words
        with STAGE_SECONDS.labels("answer").time():
            picture = self._picture(request.photo)
            return answer(self.models, request.conversation, request.question, drafts=drafts, picture=picture)

    def _picture(self, photo: bytes | None) -> Image.Image | None:
        """The question's photo (downscaled by the core, kept in memory only), decoded for an answer model that
        sees images; None without one, or when it cannot be read: the question is answered from the words."""
        if photo is None or not self.sees_images:
            return None
        try:
            return load_image(photo, self.limits).convert("RGB")
        except BadImage as error:
            log.info("the question's photo was not readable, answered from the words: %s", error.detail)
            return None

    @torch.inference_mode()
    def route(self, requests: Sequence[AnswerRequest]) -> list[Answer | OpenQuestion]:
        """Questions for an answer model elsewhere: CLIP's answers, or the open questions' chat messages."""
        results: list[Answer | OpenQuestion] = []
        for r in requests:
            self._settle(r.forgotten)
            results.append(route(self.models, r.conversation, r.question, sees_images=r.photo is not None))
        return results

    @torch.inference_mode()
    def check(self, requests: Sequence[CheckRequest]) -> list[Answer]:
        with STAGE_SECONDS.labels("answer").time():
            return [checked(self.models, r.facts, r.replies) for r in requests]

    @torch.inference_mode()
    def mood(self, requests: Sequence[MoodRequest]) -> list[Answer]:
        return [answer_mood(self.models.encoder, self._vector(r.embedding)) for r in requests]

    def _vector(self, embedding: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(embedding, dtype=torch.float32, device=self.models.encoder.device)
