"""What the bot asks of the models, behind one interface.

`LocalInference` runs them in this process: every call goes through a
micro-batcher onto one model thread, so the event loop never computes and
concurrent chats share batches. Another backend (a model server) only has to
offer the same async methods; the handlers never know which one they talk to.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch

from dialogue import Answer, Conversation, answer, answer_mood
from vision import ImageLimits, VisionModels, load_image
from vision.batcher import MicroBatcher, model_thread


@dataclass(frozen=True)
class Seen:
    """What the models made of one photo; plain data, so it can cross a process boundary."""

    caption: str
    tags: list[dict]  # [{"label": str, "score": float}], best first
    embedding: np.ndarray  # (D,) float32, L2-normalised


class Inference(Protocol):
    identity: str  # which CLIP made the vectors; stored beside them
    limits: ImageLimits  # what the bot refuses before downloading

    async def describe(self, data: bytes) -> Seen: ...
    async def embed_text(self, text: str) -> np.ndarray: ...
    async def classify(self, embedding: np.ndarray, labels: Sequence[str]) -> list[dict]: ...
    async def answer(self, conversation: Conversation, question: str) -> Answer: ...
    async def mood(self, embedding: np.ndarray) -> Answer: ...
    async def close(self) -> None: ...


class LocalInference:
    """The models in this process, batched across chats on one model thread."""

    def __init__(self, models: VisionModels, *, limits: ImageLimits = ImageLimits(), max_batch: int = 16,
                 max_wait: float = 0.005, max_queue: int = 256, text_cache: int = 4096,
                 executor: ThreadPoolExecutor | None = None) -> None:
        self.models = models
        self.identity = models.encoder.identity
        self.limits = limits
        # Pass the thread the models were loaded on: one thread, one OpenMP team (see `open_services`).
        self._thread = executor or model_thread("vision")
        self._preparing = 0  # photos being decoded: the batch waits for them, and only for them
        shared = dict(max_batch=max_batch, max_queue=max_queue, executor=self._thread)
        self.photos = MicroBatcher(self._describe_batch, name="photos", max_wait=max_wait,
                                   incoming=lambda: self._preparing, **shared)
        self.texts = MicroBatcher(self._embed_text_batch, name="texts", max_wait=max_wait, **shared)
        # Answers run one by one inside a batch (each has its own prompt), so waiting gains nothing.
        self.questions = MicroBatcher(self._answer_batch, name="questions", max_wait=0, **shared)
        self._text_vectors: OrderedDict[str, np.ndarray] = OrderedDict()
        self._text_cache = text_cache

    async def describe(self, data: bytes) -> Seen:
        # Decoding and CLIP's resize run beside the model thread (Pillow releases the GIL), in
        # parallel for many photos; a bad file fails here, alone, before it can join a batch.
        self._preparing += 1
        try:
            prepared = await asyncio.to_thread(self._prepare, data)
        finally:
            self._preparing -= 1
        return await self.photos.submit(prepared)

    def _prepare(self, data: bytes) -> torch.Tensor:
        return self.models.encoder.prepare(load_image(data, self.limits))

    async def embed_text(self, text: str) -> np.ndarray:
        """(D,) normalised CLIP text vector; repeated searches hit the cache."""
        cached = self._text_vectors.get(text)
        if cached is not None:
            self._text_vectors.move_to_end(text)
            return cached
        vector = await self.texts.submit(text)
        self._text_vectors[text] = vector
        if len(self._text_vectors) > self._text_cache:
            self._text_vectors.popitem(last=False)
        return vector

    async def classify(self, embedding: np.ndarray, labels: Sequence[str]) -> list[dict]:
        return await self.questions.submit(("classify", embedding, tuple(labels)))

    async def answer(self, conversation: Conversation, question: str) -> Answer:
        return await self.questions.submit(("answer", conversation, question))

    async def mood(self, embedding: np.ndarray) -> Answer:
        return await self.questions.submit(("mood", embedding, None))

    async def close(self) -> None:
        for batcher in (self.photos, self.texts, self.questions):
            await batcher.close()
        self._thread.shutdown(wait=True)

    # --- on the model thread ---------------------------------------------------------------------------------

    @torch.inference_mode()
    def _describe_batch(self, prepared: Sequence[torch.Tensor]) -> list[Seen]:
        pixels = self.models.encoder.pixels_from(prepared)  # normalising is a torch op: model thread only
        return [Seen(d.caption, [{"label": t.label, "score": round(t.score, 4)} for t in d.tags],
                     d.embedding.float().numpy()) for d in self.models.describe_pixels(pixels)]

    @torch.inference_mode()
    def _embed_text_batch(self, texts: Sequence[str]) -> list[np.ndarray]:
        return list(self.models.encoder.embed_texts(list(texts)).float().cpu().numpy())

    @torch.inference_mode()
    def _answer_batch(self, requests) -> list:
        return [self._one_request(*request) for request in requests]

    def _one_request(self, kind: str, subject, argument):
        if kind == "answer":
            return answer(self.models, subject, argument)
        vector = torch.as_tensor(subject, dtype=torch.float32, device=self.models.encoder.device)
        if kind == "mood":
            return answer_mood(self.models.encoder, vector)
        [tags] = self.models.tagger.classify(vector[None], list(argument))
        return [{"label": t.label, "score": round(t.score, 4)} for t in tags]
