"""The micro-batcher: results reach the right callers, errors stay with their item, a full queue pushes back."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from bot.engine.batcher import MicroBatcher
from clipchat.errors import Busy
from clipchat.metrics import batches_run
from tests.bot_helpers import eventually


async def test_concurrent_requests_are_batched_and_answered_to_the_right_caller() -> None:
    calls: list[list[int]] = []

    def square(items):
        calls.append(list(items))
        time.sleep(0.01)  # a model call: requests pile up meanwhile
        return [i * i for i in items]

    batcher = MicroBatcher(square, max_batch=8, max_wait=0.02)
    results = await asyncio.gather(*(batcher.submit(i) for i in range(40)))
    await batcher.close()
    assert results == [i * i for i in range(40)]
    assert max(len(c) for c in calls) == 8 and len(calls) <= 8  # 40 requests, far fewer model calls
    assert sorted(i for c in calls for i in c) == list(range(40))


async def test_one_bad_item_fails_only_its_caller() -> None:
    def invert(items):
        return [1 / i for i in items]  # the whole batch raises when any item is 0

    batcher = MicroBatcher(invert, max_batch=16, max_wait=0.02)
    outcomes = await asyncio.gather(*(batcher.submit(i) for i in [1, 2, 0, 4, 5]), return_exceptions=True)
    await batcher.close()
    assert outcomes[:2] == [1.0, 0.5] and outcomes[3:] == [0.25, 0.2]
    assert isinstance(outcomes[2], ZeroDivisionError)


async def test_a_full_queue_pushes_back_with_a_polite_error() -> None:
    started, release = threading.Event(), threading.Event()

    def slow(items):
        started.set()
        assert release.wait(10), "the test never released the batch"
        return list(items)

    batcher = MicroBatcher(slow, max_batch=1, max_wait=0, max_queue=2)
    running = asyncio.ensure_future(batcher.submit("first"))
    assert await asyncio.to_thread(started.wait, 10)  # the worker holds "first": the queue is empty again
    queued = [asyncio.ensure_future(batcher.submit(n)) for n in ("second", "third")]
    await eventually(lambda: batcher.waiting == 2, what="two requests queued")
    with pytest.raises(Busy) as refused:
        await batcher.submit("fourth")
    assert "try again" in refused.value.user_message
    release.set()
    assert await running == "first" and [await q for q in queued] == ["second", "third"]
    await batcher.close()


async def test_the_event_loop_keeps_running_while_a_batch_computes() -> None:
    """The batch can only finish if the event loop, free while it computes, releases it."""
    started, release = threading.Event(), threading.Event()

    def needs_the_loop(items):
        started.set()
        assert release.wait(10), "the event loop was blocked while the batch computed"
        return list(items)

    batcher = MicroBatcher(needs_the_loop, max_wait=0)
    result = asyncio.ensure_future(batcher.submit("photo"))
    assert await asyncio.to_thread(started.wait, 10)
    release.set()  # the loop runs: another chat's work could be done here
    assert await result == "photo"
    await batcher.close()


async def test_describing_through_the_batcher_matches_describing_alone(world_models, heldout) -> None:
    images = [h.image for h in heldout[:12]]
    batches = []
    batcher = MicroBatcher(
        lambda batch: batches.append(len(batch)) or world_models.describe(batch), max_batch=6, max_wait=0.05
    )
    together = await asyncio.gather(*(batcher.submit(image) for image in images))
    await batcher.close()
    alone = [world_models.describe([image])[0] for image in images]
    assert [d.caption for d in together] == [d.caption for d in alone]
    assert max(batches) > 1


async def test_a_lone_request_does_not_wait_for_company_that_is_not_coming() -> None:
    on_the_way = 0
    batches = []
    batcher = MicroBatcher(
        lambda items: batches.append(len(items)) or list(items), max_batch=8, max_wait=3600, incoming=lambda: on_the_way
    )
    # With nothing on its way, a lone request runs at once; waiting out max_wait would time this out.
    assert await asyncio.wait_for(batcher.submit("alone"), 10) == "alone"
    on_the_way = 1  # one more is being decoded: the batch waits for it

    async def late() -> str:
        nonlocal on_the_way
        await asyncio.sleep(0.2)
        on_the_way = 0
        return await batcher.submit("late")

    results = await asyncio.wait_for(asyncio.gather(batcher.submit("early"), late()), 10)
    assert results == ["early", "late"] and batches == [1, 2]
    await batcher.close()


async def test_a_burst_decoded_a_few_at_a_time_is_one_batch_not_a_batch_and_a_straggling_second() -> None:
    """Photos from a burst reach the batcher apart, as the decoding threads finish them. Waiting max_wait after
    the first took 9 of 16 (the benchmark's 16 users), and the other 7 waited out that whole batch."""
    on_the_way = 4
    batches, recorded = [], batches_run("burst")
    batcher = MicroBatcher(
        lambda items: batches.append(len(items)) or list(items),
        max_batch=16,
        max_wait=0.5,
        incoming=lambda: on_the_way,
        name="burst",
    )

    async def decoded(n: int, after: float) -> int:
        nonlocal on_the_way
        await asyncio.sleep(after)
        on_the_way -= 1
        return await batcher.submit(n)

    # each arrives 0.2 s after the one before: the last comes 0.6 s after the first, past max_wait from it
    burst = (decoded(n, 0.2 * n) for n in range(4))
    assert await asyncio.wait_for(asyncio.gather(*burst), 10) == list(range(4))
    assert batches == [4]
    # A photo that never comes (its download hung) holds the batch max_wait past the latest arrival, no longer.
    on_the_way = 3  # two arrive, one never does
    started = time.monotonic()
    # the second leaves one on the way for good: the batch goes 0.5 s after it (the old rule: after the first)
    assert await asyncio.wait_for(asyncio.gather(decoded(10, 0), decoded(11, 0.2)), 10) == [10, 11]
    assert 0.65 <= time.monotonic() - started < 5 and batches == [4, 2]
    await batcher.close()
    metric = batches_run("burst").since(recorded)  # what /metrics shows of it
    assert (metric.count, metric.requests, metric.larger_than(2), metric.mean) == (2, 6, 1, 3.0)


async def test_closing_answers_the_requests_a_gathering_batch_holds() -> None:
    batcher = MicroBatcher(lambda items: list(items), max_batch=8, max_wait=3600, incoming=lambda: 1)
    waiting = asyncio.ensure_future(batcher.submit("gathered"))  # waits for company that never comes
    await asyncio.sleep(0.1)  # taken off the queue, into the batch
    assert batcher.waiting == 0 and not waiting.done()
    await batcher.close()
    with pytest.raises(Busy):
        await asyncio.wait_for(waiting, 10)


async def test_photos_are_decoded_a_few_at_a_time_not_by_every_thread_asyncio_has() -> None:
    """Decoding ran on asyncio's default pool (up to 32 threads), each holding a full-size photo."""
    from bot.engine.api import DescribeRequest
    from bot.engine.local import LocalModels

    lock, running, peak = threading.Lock(), 0, 0

    class Engine:
        identity, limits = "fake", None

        def prepare(self, request):
            nonlocal running, peak
            with lock:
                running += 1
                peak = max(peak, running)
            time.sleep(0.05)  # a decode long enough for the others to pile up behind it
            with lock:
                running -= 1
            return request.data

        def describe(self, prepared):
            return [bytes(item) for item in prepared]

    models = LocalModels(Engine(), decode_workers=2)
    try:
        answers = await asyncio.gather(*(models.describe(DescribeRequest(bytes([n]))) for n in range(12)))
    finally:
        await models.close()
    assert answers == [bytes([n]) for n in range(12)]
    assert peak == 2


async def test_large_photos_take_turns_within_the_decode_memory_budget() -> None:
    """Two decode threads each held a crafted 49 MP PNG at once (900 MB); the budget counts bytes, not photos."""
    from bot.engine.api import DescribeRequest
    from bot.engine.local import LocalModels
    from tests.test_intake import png_claiming_size
    from vision import ImageLimits
    from vision.intake.images import decode_cost

    lock, running, peak = threading.Lock(), 0, 0

    class Engine:
        identity, limits = "fake", ImageLimits()

        def prepare(self, request):
            nonlocal running, peak
            with lock:
                running += 1
                peak = max(peak, running)
            time.sleep(0.05)
            with lock:
                running -= 1
            return request.data

        def describe(self, prepared):
            return [len(item) for item in prepared]

    large, small = png_claiming_size(7000, 7000), png_claiming_size(640, 480)
    assert decode_cost(large) > 200 * 2**20 > 100 * decode_cost(small)  # read from the header alone
    models = LocalModels(Engine(), decode_workers=2, decode_memory=300 * 2**20)
    try:
        await asyncio.gather(*(models.describe(DescribeRequest(large)) for _ in range(4)))
        assert peak == 1 and models.decode_budget.peak <= 300 * 2**20
        peak = 0
        await asyncio.gather(*(models.describe(DescribeRequest(small)) for _ in range(8)))
        assert peak == 2  # ordinary photos still decode side by side
    finally:
        await models.close()


async def test_a_decode_keeps_its_memory_until_its_thread_is_done_even_after_its_caller_gave_up() -> None:
    """The budget went back when the deadline passed, while the thread still held the photo."""
    from bot.engine.api import DescribeRequest
    from bot.engine.local import LocalModels
    from clipchat.errors import TooSlow
    from tests.test_intake import png_claiming_size
    from vision import ImageLimits

    finished = threading.Event()

    class Engine:
        identity, limits = "fake", ImageLimits()

        def prepare(self, request):
            time.sleep(0.6)  # a slow decode: the caller's deadline passes first
            finished.set()
            return request.data

        def describe(self, prepared):
            return [len(item) for item in prepared]

    models = LocalModels(Engine(), decode_workers=1, timeout=0.2)
    try:
        with pytest.raises(TooSlow):
            await models.describe(DescribeRequest(png_claiming_size(7000, 7000)))
        assert not finished.is_set() and models.decode_budget.used > 0  # still decoding: still charged
        await asyncio.get_running_loop().run_in_executor(None, finished.wait, 5)
        await asyncio.sleep(0.05)
        assert models.decode_budget.used == 0
    finally:
        await models.close()
