"""The in-process transport: the model features behind micro-batchers that share one model thread.

The event loop never computes: each call waits in its feature's batcher, and
batches run on the thread the models were loaded on (one thread, one OpenMP team).
Concurrent chats share batches; a photo waits for company only while other
photos are still being decoded.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Any, TypeVar, cast

import torch

from clipchat.errors import TooSlow
from clipchat.facts import PhotoFacts
from clipchat.metrics import DECODE_QUEUE
from dialogue import Answer, OpenQuestion
from vision.intake.device_jpeg import DeferredJpeg
from vision.intake.images import decode_cost
from vision.models.answer_model import AnswerModel

from .api import (
    AnswerRequest,
    CheckRequest,
    ClassifyRequest,
    DescribeRequest,
    Draft,
    LabelScores,
    MoodRequest,
    TextRequest,
    TextVector,
)
from .batcher import MicroBatcher, model_thread, passing_thread
from .budget import MemoryBudget
from .features import Drafting, ModelFeatures

T = TypeVar("T")
R = TypeVar("R")

ANSWER_MODEL_RETRY_S = 60.0  # after a failed load of the answer model, questions hear its error this long


class LocalModels:
    """`Models` in this process."""

    def __init__(
        self,
        features: ModelFeatures,
        *,
        max_batch: int = 16,
        max_wait: float = 0.005,
        max_queue: int = 256,
        text_cache: int = 4096,
        executor: Executor | None = None,
        decode_workers: int | None = None,
        decode_memory: int = 512 * 2**20,
        timeout: float = 120.0,
    ) -> None:
        self.features = features
        self.identity = features.identity
        self.limits = features.limits
        # Whether questions bring their photo: the in-process answer model is a vision-language model (known from
        # its config at start-up, before it loads)
        self.sees_images = bool(getattr(features, "sees_images", False))
        # Pass the thread the models were loaded on: one thread, one OpenMP team (see `adapter.application.open_models`).
        self._thread = executor or model_thread("vision")
        self._max_batch, self._max_queue, self._max_wait = max_batch, max_queue, max_wait
        self._batchers: dict[str, MicroBatcher[Any, Any]] = {}
        self._preparing = 0  # photos being decoded: a photo batch waits for them, and only for them
        # Decoding a large photo briefly takes up to one full-size plane (200 MB at 50 MP): a few at a
        # time, not asyncio's default pool of up to 32 threads
        self._decoders = ThreadPoolExecutor(
            max_workers=decode_workers or min(4, os.cpu_count() or 1), thread_name_prefix="decode"
        )
        self.decode_budget = MemoryBudget(decode_memory)  # ... and only so many bytes of them at once
        self._text_vectors: OrderedDict[str, TextVector] = OrderedDict()
        self._text_cache = text_cache
        self._forgotten = 0  # the count of /forgets `_text_vectors` was filled under (see `Models`)
        self._emptied = 0  # times `_text_vectors` was emptied: a phrase asked before is not put back after
        # A caller waits at most this long, queue and decoding included; a batch still running past it
        # makes `stalled_for` say so, and the bot's liveness check fails (a hung GPU never raises)
        self.timeout = timeout
        self._answer_loading: asyncio.Future[AnswerModel] | None = None
        self._answer_failed_at = 0.0

    async def describe(self, request: DescribeRequest) -> PhotoFacts:
        # Decoding and CLIP's resize run beside the model thread, in parallel for many photos.
        async with self._deadline("describe"):
            self._preparing += 1
            DECODE_QUEUE.inc()
            try:
                prepared = await self._decode(request)
            finally:
                self._preparing -= 1
                DECODE_QUEUE.dec()
            described = await self._run(self.features.describe, prepared, incoming=lambda: self._preparing)
            return cast(PhotoFacts, described)  # the batcher raises a photo's BadImage to its caller instead

    async def _decode(self, request: DescribeRequest) -> torch.Tensor | DeferredJpeg:
        """Decode within the memory budget. Even reading the header runs off the event loop (a PNG of
        100k empty chunks takes 0.3 s to open), and the bytes are held until the decoding thread is
        done, however soon its caller gives up."""
        loop = asyncio.get_running_loop()
        cost = await loop.run_in_executor(self._decoders, decode_cost, request.data, self.limits)
        await self.decode_budget.acquire(cost)
        try:
            decoding = loop.run_in_executor(self._decoders, self.features.prepare, request)
        except BaseException:
            self.decode_budget.release(cost)
            raise
        decoding.add_done_callback(lambda _: self.decode_budget.release(cost))
        return await asyncio.shield(decoding)

    async def embed_text(self, request: TextRequest) -> TextVector:
        """Repeated searches hit the cache, unless someone was forgotten since it was filled."""
        if request.forgotten != self._forgotten:  # a /forget here or elsewhere: the phrases may be theirs
            self._forget_phrases()
            self._forgotten = request.forgotten
        cached = self._text_vectors.get(request.text)
        if cached is not None:
            self._text_vectors.move_to_end(request.text)
            return cached
        emptied = self._emptied
        vector = await self._run(self.features.embed_text, request)
        if emptied == self._emptied:  # no /forget emptied the cache while this phrase was embedded
            self._text_vectors[request.text] = vector
            if len(self._text_vectors) > self._text_cache:
                self._text_vectors.popitem(last=False)
        return vector

    # Each has its own prompt or labels, so batches gain nothing by waiting for company.
    async def classify(self, request: ClassifyRequest) -> LabelScores:
        return await self._run(self.features.classify, request, wait=False)

    async def answer(self, request: AnswerRequest) -> Answer:
        await self._answer_model_ready()
        return await self._run(self.features.answer, request, wait=False)

    async def answer_stream(self, request: AnswerRequest) -> AsyncIterator[Draft | Answer]:
        """The language model's first sampled answer as it is written (each `Draft` the text so far, the newest
        only when several arrived meanwhile), then the checked answer; a question CLIP answers exactly, or the
        caption, has no drafts. Waits are bounded as `answer`'s are; a caller that stops reading stops the
        sampling at its next token, and the model thread moves on."""
        await self._answer_model_ready()
        written: asyncio.Queue[str] = asyncio.Queue()  # unbounded, but one entry a token at most
        drafts = _LoopDrafts(asyncio.get_running_loop(), written)
        answering = asyncio.ensure_future(self._run(self.features.answer, Drafting(request, drafts), wait=False))
        try:
            while True:
                reading = asyncio.ensure_future(written.get())
                try:
                    await asyncio.wait((reading, answering), return_when=asyncio.FIRST_COMPLETED)
                finally:
                    reading.cancel()
                if answering.done():  # what the drafts still held is stale: the answer replaces it
                    break
                text = reading.result()
                while not written.empty():
                    text = written.get_nowait()
                yield Draft(text)
            yield answering.result()
        finally:
            drafts.close()
            if not answering.done():
                answering.cancel()
            elif not answering.cancelled():
                answering.exception()  # seen: a reader that left early needs no "never retrieved" logged

    # The answer model is not loaded for these: a model elsewhere writes the answers they are for.
    async def route(self, request: AnswerRequest) -> Answer | OpenQuestion:
        return await self._run(self.features.route, request, wait=False)

    async def check(self, request: CheckRequest) -> Answer:
        return await self._run(self.features.check, request, wait=False)

    async def _answer_model_ready(self) -> None:
        """Load the answer model beside the model thread on the first question: a download or a load of
        several GB must not hold everyone's photos, nor look like a hung model thread to the liveness check.
        A failed load is reported to the questions of the next minute, then tried again."""
        answerer = self.features.models.answerer
        if answerer.loaded:
            return
        loading = self._answer_loading
        if loading is None or (
            loading.done()
            and loading.exception() is not None
            and time.monotonic() - self._answer_failed_at > ANSWER_MODEL_RETRY_S
        ):
            # not a pooled thread: one that outlives the load would keep its OpenMP team (see passing_thread)
            loading = self._answer_loading = asyncio.wrap_future(passing_thread(answerer.get, "answer-model-load"))
            loading.add_done_callback(self._note_answer_load)
        async with self._deadline("loading the answer model"):
            await asyncio.shield(loading)  # a caller that gives up leaves the load running for the next one

    def _note_answer_load(self, loading: asyncio.Future[AnswerModel]) -> None:
        if not loading.cancelled() and loading.exception() is not None:
            self._answer_failed_at = time.monotonic()

    async def mood(self, request: MoodRequest) -> Answer:
        return await self._run(self.features.mood, request, wait=False)

    async def forget_caches(self) -> None:
        """Drop every cached phrase and label set: a cache entry cannot say whose words it holds."""
        self._forget_phrases()
        async with self._deadline("forget_caches"):
            await asyncio.get_running_loop().run_in_executor(self._thread, self.features.forget_caches)

    def _forget_phrases(self) -> None:
        self._text_vectors.clear()
        self._emptied += 1

    def cached_entries(self) -> int:
        """Search phrases and /tags label sets held in memory (for metrics and tests)."""
        return len(self._text_vectors) + self.features.cached_entries()

    def stalled_for(self) -> float:
        """Seconds the batch now on the model thread has been running (0 when idle)."""
        return max((batcher.stalled_for() for batcher in self._batchers.values()), default=0.0)

    def queue_depths(self) -> dict[str, int]:
        return {name: batcher.waiting for name, batcher in self._batchers.items()}

    async def close(self) -> None:
        for batcher in self._batchers.values():
            await batcher.close()
        self._decoders.shutdown(wait=True)
        # A batch stuck past the timeout (a hung GPU) may never end: waiting for it would hang the very
        # stop that exits the bot to be restarted
        self._thread.shutdown(wait=self.stalled_for() <= self.timeout)

    async def _run(
        self,
        feature: Callable[[Sequence[T]], Sequence[R]],
        item: T,
        *,
        wait: bool = True,
        incoming: Callable[[], int] | None = None,
    ) -> R:
        """`feature`'s result for `item`, computed in a batch with whatever else arrived meanwhile."""
        name = feature.__name__
        batcher: MicroBatcher[T, R] | None = self._batchers.get(name)
        if batcher is None:
            batcher = self._batchers[name] = MicroBatcher(
                feature,
                name=name,
                incoming=incoming,
                max_wait=self._max_wait if wait else 0,
                max_batch=self._max_batch,
                max_queue=self._max_queue,
                executor=self._thread,
            )
        async with self._deadline(name):
            return await batcher.submit(item)

    @contextlib.asynccontextmanager
    async def _deadline(self, feature: str) -> AsyncIterator[None]:
        """The block within `timeout` seconds, or TooSlow: the caller's wait ends, though a model thread
        that hangs cannot be interrupted (its item is dropped when the batch that holds it ends)."""
        deadline = asyncio.timeout(self.timeout)
        try:
            async with deadline:
                yield
        except TimeoutError:
            if not deadline.expired():  # some other wait inside timed out: not ours to rename
                raise
            raise TooSlow(
                detail=f"{feature} took over {self.timeout:g} s (model thread busy "
                f"{self.stalled_for():.0f} s on one batch)"
            ) from None


class _LoopDrafts:
    """`dialogue.Drafts` from the model thread into a queue on the event loop; once closed (the reader gave up,
    or the loop is gone), the model thread hears that no one wants them."""

    def __init__(self, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[str]) -> None:
        self._loop, self._queue = loop, queue
        self._open = True  # written by either thread, read by the model thread: one bool, atomic

    def show(self, text: str) -> None:
        if not self._open:
            return
        try:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, text)
        except RuntimeError:  # the loop is closed: the bot is stopping
            self._open = False

    def wanted(self) -> bool:
        return self._open

    def close(self) -> None:
        self._open = False
