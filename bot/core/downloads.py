"""Downloads within a byte budget, and one download per file at a time.

    async with services.downloads.fetched(photo, chat.fetch) as data:
        facts = await services.models.describe(DescribeRequest(data))

A photo's declared size (Telegram's `file_size`, else the largest file the bot takes) comes out of the
budget before any request to Telegram, and goes back when the block is done: its bytes decoded and
described, or dropped on an error. A photo that finds no room within a bounded wait hears "busy, try
again", so a flood of large files queues no bytes at all, only its waiting. Requests for one
`file_unique_id` share one download and one charge: re-sending a file costs its sender nothing, and
now costs the bot nothing either.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from clipchat.errors import Busy

from .incoming import PhotoFile

log = logging.getLogger(__name__)
DOWNLOAD_WAIT_S = 60.0  # the longest a photo waits for room before its sender hears "busy"


class ByteBudget:
    """Bytes granted to whoever fits, oldest waiter first; a waiter that does not fit lets a smaller one
    behind it pass (so one ordinary photo is not queued behind a flood of large files: the large ones
    wait their bounded time and are refused). Never more than `total` is taken, nor less than 0."""

    def __init__(self, total: int) -> None:
        if total <= 0:
            raise ValueError("a byte budget must be positive")
        self.total = total
        self.used = 0
        self.peak = 0  # the most ever taken at once (for metrics and tests)
        self._waiting: list[tuple[int, asyncio.Future[None]]] = []

    async def acquire(self, amount: int, wait: float) -> None:
        """Take `amount` bytes, waiting at most `wait` seconds for them (else Busy). An amount larger than
        the whole budget could never be granted and is refused at once (ValueError)."""
        if amount < 0:
            raise ValueError(f"cannot take {amount} bytes")
        if amount > self.total:
            raise ValueError(f"{amount} bytes can never fit a budget of {self.total}")
        if self.used + amount <= self.total:
            self._take(amount)
            return
        granted = asyncio.get_running_loop().create_future()
        waiter = (amount, granted)
        self._waiting.append(waiter)
        try:
            async with asyncio.timeout(wait):
                await granted
        except BaseException as error:
            if granted.done() and not granted.cancelled():  # granted just as the caller gave up
                self.release(amount)
            else:
                self._waiting.remove(waiter)
            if isinstance(error, TimeoutError):
                raise Busy(detail=f"{amount} bytes waited {wait:g} s for the download budget") from None
            raise

    def release(self, amount: int) -> None:
        if amount < 0 or amount > self.used:
            raise ValueError(f"releasing {amount} bytes of {self.used} taken")
        self.used -= amount
        for waiter in list(self._waiting):
            needed, granted = waiter
            if self.used + needed <= self.total:
                self._waiting.remove(waiter)
                self._take(needed)
                granted.set_result(None)

    def _take(self, amount: int) -> None:
        self.used += amount
        self.peak = max(self.peak, self.used)


@dataclass
class _Flight:
    cost: int
    task: asyncio.Future[bytes | bytearray]
    users: int = 0


class Downloads:
    """The photos being downloaded or looked at, and the bytes they may hold, all chats together."""

    def __init__(self, total: int, max_bytes: int, wait: float = DOWNLOAD_WAIT_S) -> None:
        if total < max_bytes:
            log.warning("download budget %d < the largest file %d: raised to it", total, max_bytes)
        self.budget = ByteBudget(max(total, max_bytes))
        self.max_bytes = max_bytes
        self.wait = wait
        self._flights: dict[str, _Flight] = {}
        self.started = 0  # downloads actually begun (for metrics and tests)

    def cost(self, photo: PhotoFile) -> int:
        """What a photo may take: its declared size, else the most the bot downloads. A declared size over
        that is refused by the fetch before any download, so it costs no more than the limit."""
        return self.max_bytes if photo.size is None else min(max(photo.size, 0), self.max_bytes)

    @contextlib.asynccontextmanager
    async def fetched(
        self, photo: PhotoFile, fetch: Callable[[PhotoFile], Awaitable[bytes | bytearray]]
    ) -> AsyncIterator[bytes | bytearray]:
        """The photo's bytes, held within the budget until the block ends; raises Busy when no room
        came within the wait. A download of the same file already under way is joined, not repeated."""
        key = photo.file_unique_id
        flight = self._flights.get(key)
        if flight is None:
            cost = self.cost(photo)
            await self.budget.acquire(cost, self.wait)
            flight = self._flights.get(key)  # someone started it while this one waited
            if flight is not None:
                self.budget.release(cost)
            else:
                flight = self._start(key, cost, fetch(photo))
        flight.users += 1
        try:
            data = await asyncio.shield(flight.task)
            yield data
        finally:
            flight.users -= 1
            if not flight.users:
                flight.task.cancel()  # nobody waits for it any more (a no-op once it is done)
                if self._flights.get(key) is flight:
                    del self._flights[key]
                self.budget.release(flight.cost)

    def _start(self, key: str, cost: int, download: Awaitable[bytes | bytearray]) -> _Flight:
        self.started += 1
        flight = _Flight(cost, asyncio.ensure_future(download))

        def forget_failure(task: asyncio.Future[bytes | bytearray]) -> None:
            # a failed download is not shared with those who ask later: they try again
            if (task.cancelled() or task.exception() is not None) and self._flights.get(key) is flight:
                del self._flights[key]

        flight.task.add_done_callback(forget_failure)
        self._flights[key] = flight
        return flight
