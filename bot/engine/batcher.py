"""Gather concurrent requests from many chats into one batched model call.

    batcher = MicroBatcher(models.describe, max_batch=16, max_wait=0.005)
    description = await batcher.submit(image)      # from any number of handlers at once

The first request waits at most `max_wait` for company. With `incoming`, the count of requests on their
way (photos being decoded), it waits only while some are, and up to `max_wait` past the latest to arrive:
at most `max_batch x max_wait` in all. The batch runs in the batcher's own model thread so the event loop
keeps serving other chats. If a batch fails, its items are retried one by one, so one bad item fails only
its own caller. The queue is bounded: when it is full, `submit` raises `Busy`, a message the bot can show;
`close` answers everything not yet answered with `Busy` too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from typing import Generic, TypeVar, cast

from clipchat.errors import Busy
from clipchat.metrics import BATCH_SIZE, MODEL_BUSY, MODEL_QUEUE

log = logging.getLogger(__name__)
T = TypeVar("T")
R = TypeVar("R")


class MicroBatcher(Generic[T, R]):
    def __init__(
        self,
        process: Callable[[Sequence[T]], Sequence[R]],
        *,
        max_batch: int = 16,
        max_wait: float = 0.005,
        max_queue: int = 256,
        name: str = "vision",
        executor: Executor | None = None,
        incoming: Callable[[], int] | None = None,
    ) -> None:
        if max_batch < 1 or max_queue < 1 or max_wait < 0:
            raise ValueError("max_batch and max_queue must be positive and max_wait not negative")
        self._process = process
        self.max_batch = max_batch
        self.max_wait = max_wait
        self.name = name
        self._queue: asyncio.Queue[tuple[T, asyncio.Future[R]]] = asyncio.Queue(maxsize=max_queue)
        # One long-lived thread: PyTorch's OpenMP team belongs to the calling thread, and hopping
        # between the default executor's threads measured 40% slower on a 2-core CPU. Batchers
        # over the same models share one (`executor`), so they never compete for the cores.
        self._owns_thread = executor is None
        self._thread = executor or model_thread(name)
        # How many requests are on their way (being decoded, say): the first request of a batch
        # waits for company only while some are, so a lone photo never pays max_wait.
        self._incoming = incoming
        self._worker: asyncio.Task[None] | None = None
        self._running_since: float | None = None  # when the batch now on the model thread started

    async def submit(self, item: T) -> R:
        """The result for `item`, computed in a batch with whatever else arrived meanwhile."""
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._run(), name=f"{self.name}-batcher")
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        try:
            self._queue.put_nowait((item, future))
        except asyncio.QueueFull:
            raise Busy(detail=f"{self.name} queue full ({self._queue.maxsize} waiting)") from None
        MODEL_QUEUE.labels(self.name).inc()
        return await future

    async def close(self) -> None:
        """Stop the worker; requests still queued get `Busy`."""
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):  # the cancellation we asked for
                await self._worker
        while not self._queue.empty():
            _, future = self._queue.get_nowait()
            MODEL_QUEUE.labels(self.name).dec()
            if not future.done():
                future.set_exception(Busy(detail="shutting down"))
        if self._owns_thread:
            self._thread.shutdown(wait=False)

    @property
    def waiting(self) -> int:
        return self._queue.qsize()

    def stalled_for(self) -> float:
        """Seconds the batch now running has taken (0 when idle): liveness, since a hung GPU never raises."""
        started = self._running_since
        return time.monotonic() - started if started is not None else 0.0

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            MODEL_QUEUE.labels(self.name).dec()  # counted as it leaves the queue: a cancelled worker leaks none
            try:
                await self._gather(batch)
                live = [(item, future) for item, future in batch if not future.cancelled()]
                if live:
                    BATCH_SIZE.labels(self.name).observe(len(live))
                    await self._answer(live)
            except asyncio.CancelledError:  # `close`: the requests taken off the queue hear it too
                for _, future in batch:
                    _settle(future, error=Busy(detail="shutting down"))
                raise

    async def _gather(self, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        """Add to `batch` what arrives while it waits for company."""
        deadline = time.monotonic() + self.max_wait
        while len(batch) < self.max_batch:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or (self._incoming is not None and self._queue.empty() and not self._incoming()):
                return
            try:
                batch.append(await asyncio.wait_for(self._queue.get(), remaining))
                MODEL_QUEUE.labels(self.name).dec()
            except TimeoutError:
                return
            if self._incoming is not None:
                # Photos still being decoded arrive a few ms apart: wait max_wait past the latest, not the first,
                # so a burst decoded two at a time is one batch, not a batch of the first few and a second whose
                # photos wait out the whole first (at most max_batch - 1 extensions, each needing an arrival)
                deadline = time.monotonic() + self.max_wait

    async def _answer(self, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        items = [item for item, _ in batch]
        try:
            results = await asyncio.get_running_loop().run_in_executor(self._thread, self._timed, items)
            if len(results) != len(items):
                raise RuntimeError(f"{self.name}: {len(results)} results for {len(items)} items")
        except Exception as error:  # isolate the bad item: retry one at a time, fail only its caller
            if len(batch) == 1:
                _settle(batch[0][1], error=error)
                return
            log.warning("%s batch of %d failed; retrying its items one by one", self.name, len(batch), exc_info=True)
            for pair in batch:
                await self._answer([pair])
            return
        for (_, future), result in zip(batch, results):
            _settle(future, result=result)

    def _timed(self, items: Sequence[T]) -> Sequence[R]:
        """Model thread: the batch, timed from when it starts here (not from when it joined the thread's
        queue behind other features' batches, which is load, not a hang)."""
        self._running_since = started = time.monotonic()
        try:
            return self._process(items)
        finally:
            self._running_since = None
            MODEL_BUSY.labels(self.name).inc(time.monotonic() - started)


def model_thread(name: str = "vision") -> ThreadPoolExecutor:
    """The single thread that runs a set of models; share it between the batchers that use them."""
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"{name}-model")


def passing_thread(work: Callable[[], R], name: str) -> Future[R]:
    """Run `work` beside the model thread on a thread that ends when it does.

    PyTorch gives each thread that runs a parallel op its own OpenMP team, and the team lives as long as
    its thread. While a second team exists the CPU counts as oversubscribed, and OpenMP stops its threads
    spinning between parallel regions, which slowed every later batch on the model thread for as long as the
    pooled thread that once loaded a model stayed alive (docs/benchmarks.md has the figures). A thread that
    ends takes its team with it.
    """
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
    try:
        return executor.submit(work)
    finally:
        executor.shutdown(wait=False)  # the thread exits once `work` is done


def _settle(future: asyncio.Future[R], result: R | None = None, error: BaseException | None = None) -> None:
    if future.done():  # the caller gave up (timeout, cancelled update)
        return
    if error is None and isinstance(result, Exception):  # a batch answers one item with its own error
        error = result
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(cast(R, result))  # no error: `result` is this item's answer
