"""The model engine: every model feature, written once, as a batched call on the model thread.

Each method takes a batch of requests and returns one result per request, in order.
Only `prepare` may run on another thread (it decodes a photo with Pillow, which
releases the GIL); everything else runs on the one thread the models were loaded on.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from clipchat.facts import PhotoFacts
from clipchat.metrics import STAGE_SECONDS
from dialogue import Answer, answer, answer_mood
from vision import ImageLimits, VisionModels, load_image
from vision.decoding import DecodingOptions

from .api import AnswerRequest, ClassifyRequest, DescribeRequest, LabelScores, MoodRequest, TextRequest, TextVector


class ModelEngine:
    def __init__(self, models: VisionModels, limits: ImageLimits = ImageLimits(),
                 decoding: DecodingOptions | None = None) -> None:
        self.models = models
        self.limits = limits
        self.decoding = decoding  # None: the captioner's own method and defaults
        self.identity = models.encoder.identity

    def prepare(self, request: DescribeRequest) -> torch.Tensor:
        """Any thread: decode, check and resize one photo for CLIP; a bad file fails here, alone."""
        with STAGE_SECONDS.labels("decode").time():
            return self.models.encoder.prepare(load_image(request.data, self.limits))

    @torch.inference_mode()
    def describe(self, prepared: Sequence[torch.Tensor]) -> list[PhotoFacts]:
        pixels = self.models.encoder.pixels_from(prepared)  # (N, 3, H, W); normalising is a torch op
        return self.models.describe_pixels(pixels, self.decoding)

    def cached_entries(self) -> int:
        """/tags label sets the models hold (for metrics and tests)."""
        tagger = self.models.tagger
        return tagger.cached_label_sets if tagger is not None else 0

    def forget_caches(self) -> int:
        """Model thread: drop what people typed that the models keep (label sets); returns how many."""
        tagger = self.models.tagger
        return tagger.forget_label_sets() if tagger is not None else 0

    @torch.inference_mode()
    def embed_text(self, requests: Sequence[TextRequest]) -> list[TextVector]:
        vectors = self.models.encoder.embed_texts([r.text for r in requests]).float().cpu().numpy()  # (N, D)
        return [TextVector(vector) for vector in vectors]

    @torch.inference_mode()
    def classify(self, requests: Sequence[ClassifyRequest]) -> list[LabelScores]:
        return [LabelScores(tuple(self.models.tagger.classify(self._vector(r.embedding)[None], list(r.labels))[0]))
                for r in requests]

    @torch.inference_mode()
    def answer(self, requests: Sequence[AnswerRequest]) -> list[Answer]:
        return [self._answer(r) for r in requests]  # each has its own prompt

    def _answer(self, request: AnswerRequest) -> Answer:
        with STAGE_SECONDS.labels("answer").time():
            return answer(self.models, request.conversation, request.question)

    @torch.inference_mode()
    def mood(self, requests: Sequence[MoodRequest]) -> list[Answer]:
        return [answer_mood(self.models.encoder, self._vector(r.embedding)) for r in requests]

    def _vector(self, embedding) -> torch.Tensor:
        return torch.as_tensor(embedding, dtype=torch.float32, device=self.models.encoder.device)
