"""A memory budget for work in flight: photos being decoded take bytes from it, and wait when it is spent.

    budget = MemoryBudget(512 * 2**20)
    await budget.acquire(cost)
    decoding = loop.run_in_executor(decoders, load_image, data)
    decoding.add_done_callback(lambda _: budget.release(cost))  # when the thread is done, not the caller

A bounded pool bounds how many photos decode at once, not how large they are: two crafted 49 MP
PNGs decoding side by side took 900 MB. The budget bounds the bytes. One piece of work always
runs, however large (it waits until it runs alone), so nothing is refused for its size here;
the pixel limit refuses what is too large for anyone.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
from collections import deque

log = logging.getLogger(__name__)
M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter
LARGE_BLOCK = 8 * 2**20  # below Pillow's 16 MB image blocks, above most tensors a batch allocates


def return_large_blocks_to_the_os() -> bool:
    """Give every allocation of LARGE_BLOCK or more its own mapping, unmapped when freed.

    glibc raises its mmap threshold as large blocks are freed, after which a decoded photo's
    blocks come from the decoding thread's arena and stay resident: two decode threads once held
    650 MB after decoding one crafted PNG each, 420 MB more than the budget allowed at once. A fixed
    threshold keeps resident memory to what is in use. Returns False where the C library is not glibc.
    """
    try:
        return bool(ctypes.CDLL(None).mallopt(M_MMAP_THRESHOLD, LARGE_BLOCK))
    except (OSError, AttributeError) as error:  # musl, macOS: their allocators behave otherwise
        log.info("mallopt not available (%s): freed photo memory may stay resident", error)
        return False


class MemoryBudget:
    """Bytes granted first come, first served; `release` may be called from a done-callback, so a
    decode that outlives its caller (a deadline passed) keeps its bytes until its thread is done."""

    def __init__(self, total: int) -> None:
        if total <= 0:
            raise ValueError("a memory budget must be positive")
        self.total = total
        self.used = 0
        self.peak = 0  # the most ever taken at once (for metrics and tests)
        self._waiting: deque[tuple[int, asyncio.Future[None]]] = deque()

    async def acquire(self, amount: int) -> None:
        """Wait until `amount` bytes fit (or nothing else is running), then take them."""
        if not self._waiting and self._fits(amount):
            self._take(amount)
            return
        granted = asyncio.get_running_loop().create_future()
        self._waiting.append((amount, granted))
        try:
            await granted
        except asyncio.CancelledError:
            if granted.done() and not granted.cancelled():  # granted just as the caller gave up
                self.release(amount)
            else:
                self._waiting.remove((amount, granted))
            raise

    def release(self, amount: int) -> None:
        self.used -= amount
        while self._waiting and self._fits(self._waiting[0][0]):
            amount, granted = self._waiting.popleft()
            if not granted.cancelled():
                self._take(amount)
                granted.set_result(None)

    def _fits(self, amount: int) -> bool:
        return self.used == 0 or self.used + amount <= self.total

    def _take(self, amount: int) -> None:
        self.used += amount
        self.peak = max(self.peak, self.used)
