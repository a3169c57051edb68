"""Serving a pipeline as the bot serves photos, under two kinds of traffic.

Every pipeline gets the same treatment: JPEG bytes in; `prepare` on worker threads;
batches gathered by the bot's own MicroBatcher, whose first photo waits up to
`max_wait` for company only while other photos are still being prepared; batches
run on one shared model thread; the same warm-up. Latency runs from a photo's
arrival to its answer.

- `closed_loop`: `clients` users each send their next photo when the last is answered
  (16 clients: everyone at once, batching's best case; 1 client: a lone photo's latency).
- `poisson`: photos arrive at random, `rate` a second on average, whether or not
  earlier ones are answered, as strangers' photos do.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bot.engine.batcher import MicroBatcher

from .pipelines import Pipeline

RUN_TIMEOUT_S = 3600.0  # a run that takes longer is broken, not slow


@dataclass(frozen=True)
class Sample:
    photos_per_s: float
    latencies_s: tuple[float, ...]

    @property
    def p50_ms(self) -> float:
        return 1000 * statistics.median(self.latencies_s)

    @property
    def p95_ms(self) -> float:
        return 1000 * float(np.percentile(self.latencies_s, 95))


class _Server:
    def __init__(self, pipeline: Pipeline, thread: Executor, max_wait: float) -> None:
        self.pipeline = pipeline
        self.preparing = 0
        self.batcher = MicroBatcher(
            pipeline.process,
            max_batch=pipeline.max_batch,
            max_wait=max_wait,
            max_queue=4096,
            name=pipeline.name,
            executor=thread,
            incoming=lambda: self.preparing,
        )

    async def caption(self, data: bytes, arrived: float) -> float:
        """Seconds from `arrived` to the answer."""
        self.preparing += 1
        try:
            item = await asyncio.to_thread(self.pipeline.prepare, data)
        finally:
            self.preparing -= 1
        await self.batcher.submit(item)
        return time.perf_counter() - arrived


def warm_up(pipeline: Pipeline, photos: Sequence[bytes], thread: Executor) -> None:
    """The same for every pipeline: one full batch and one lone photo, through prepare and process."""
    check_prepare_keeps_off_openmp(pipeline, photos[0])
    batch = [pipeline.prepare(data) for data in photos[: pipeline.max_batch]]
    thread.submit(pipeline.process, batch).result()
    thread.submit(pipeline.process, batch[:1]).result()


def check_prepare_keeps_off_openmp(pipeline: Pipeline, photo: bytes) -> None:
    """Refuse a `prepare` that runs a parallel PyTorch op. It runs on worker threads, and such a thread keeps
    an OpenMP team of its own; with two teams on the CPU OpenMP stops its threads spinning between parallel
    regions, which slowed the model thread by up to 60% on 2 cores, for every pipeline measured after it."""
    tasks = Path("/proc/self/task")
    if not tasks.is_dir():  # Linux only; elsewhere unchecked
        return

    def prepare() -> int:
        before = len(list(tasks.iterdir()))
        pipeline.prepare(photo)
        return len(list(tasks.iterdir())) - before

    with ThreadPoolExecutor(1, thread_name_prefix="prepare-check") as worker:  # a thread that ends after
        spawned = worker.submit(prepare).result(RUN_TIMEOUT_S)
    if spawned > 0:  # threads ending elsewhere meanwhile can only lower the count
        raise RuntimeError(
            f"{pipeline.name}: prepare started {spawned} thread(s): an OpenMP team, from a parallel "
            "PyTorch op; keep it to Pillow and NumPy (the model thread does the tensor work)"
        )


def closed_loop(pipeline: Pipeline, photos: Sequence[bytes], clients: int, thread: Executor, max_wait: float) -> Sample:
    async def main() -> Sample:
        server = _Server(pipeline, thread, max_wait)
        latencies: list[float] = []

        async def client(mine: Sequence[bytes]) -> None:
            for data in mine:
                latencies.append(await server.caption(data, time.perf_counter()))

        started = time.perf_counter()
        await asyncio.wait_for(asyncio.gather(*(client(photos[i::clients]) for i in range(clients))), RUN_TIMEOUT_S)
        wall = time.perf_counter() - started
        await server.batcher.close()
        return Sample(len(photos) / wall, tuple(latencies))

    return asyncio.run(main())


def poisson(
    pipeline: Pipeline, photos: Sequence[bytes], rate: float, thread: Executor, max_wait: float, seed: int
) -> Sample:
    """Throughput here is photos over the time from the first arrival to the last answer."""
    gaps = np.random.default_rng(seed).exponential(1 / rate, len(photos))
    gaps[0] = 0.0

    async def main() -> Sample:
        server = _Server(pipeline, thread, max_wait)
        started = time.perf_counter()
        arrivals = started + np.cumsum(gaps)
        tasks = []
        for data, arrival in zip(photos, arrivals):
            await asyncio.sleep(max(0.0, arrival - time.perf_counter()))
            tasks.append(asyncio.create_task(server.caption(data, float(arrival))))
        latencies = await asyncio.wait_for(asyncio.gather(*tasks), RUN_TIMEOUT_S)
        wall = time.perf_counter() - started
        await server.batcher.close()
        return Sample(len(photos) / wall, tuple(latencies))

    return asyncio.run(main())


def spread(values: Sequence[float]) -> dict:
    """Median and range over repeats."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}
