"""Photos being downloaded and looked at: their bytes within a budget, and one look per file at a time.

    facts = await services.downloads.look(photo, chat.fetch, describe)

A photo's declared size (Telegram's `file_size`; undeclared, the largest file the bot takes) comes out of
a byte budget before anything is asked of Telegram, and goes back once the photo is described or has
failed: its bytes exist only in between. That part runs in a task of its own and waits only on Telegram
and the models, each within its own deadline, never on an album, a slot or room in this budget, so the
budget always comes back. A photo that finds no room within `wait` seconds fails with `Busy` ("try
again"): a flood queues its waiting, never its bytes.

Album photos may fill only `album_share` of the budget. One sender has one single photo in flight (their
updates run in order) but up to ten album photos, and one person can be many senders (each channel they
write as, each group they are an anonymous admin of): the rest stays for everyone else's photos.

Requests for one `file_unique_id` while it is being looked at share that look: one download, one charge,
one description: a re-sent file costs its sender nothing, and while the first is being looked at, nor the bot.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from clipchat.errors import Busy

from .incoming import PhotoFile

log = logging.getLogger(__name__)
T = TypeVar("T")
Data = TypeVar("Data")

DOWNLOAD_WAIT_S = 60.0  # the longest a photo waits for room before its sender hears "busy"
ALBUM_SHARE = 0.75  # of the budget, the most album photos may hold, all senders together


class ByteBudget:
    """Bytes granted to whoever fits, oldest waiter first. A waiter that does not fit lets a smaller one pass
    (so one ordinary photo is not queued behind a flood of large ones, which wait their bounded time).
    `used` never exceeds `total`, nor the ceiling a grant asked for, and never goes below 0."""

    def __init__(self, total: int) -> None:
        if total <= 0:
            raise ValueError("a byte budget must be positive")
        self.total = total
        self.used = 0
        self.peak = 0  # the most ever taken at once (for metrics and tests)
        self._waiting: list[tuple[int, int, asyncio.Future[None]]] = []  # (amount, ceiling, granted)

    async def acquire(self, amount: int, wait: float, ceiling: int | None = None) -> None:
        """Take `amount` bytes once `used` would stay within `ceiling` (default: the whole budget), waiting at
        most `wait` seconds for that, else Busy. An amount over the ceiling could never be granted: ValueError."""
        limit = self.total if ceiling is None else min(ceiling, self.total)
        if amount < 0 or amount > limit:
            raise ValueError(f"{amount} bytes can never be taken within {limit} of a budget of {self.total}")
        if self.used + amount <= limit:
            self._take(amount)
            return
        granted = asyncio.get_running_loop().create_future()
        waiter = (amount, limit, granted)
        self._waiting.append(waiter)
        try:
            async with asyncio.timeout(wait):
                await granted
        except BaseException as error:
            if granted.done() and not granted.cancelled():  # granted just as the caller gave up: give it back
                self.release(amount)
            elif waiter in self._waiting:
                self._waiting.remove(waiter)
            if isinstance(error, TimeoutError):
                raise Busy(detail=f"{amount} bytes found no room in the download budget within {wait:g} s") from None
            raise

    def release(self, amount: int) -> None:
        if amount < 0 or amount > self.used:
            raise ValueError(f"releasing {amount} bytes of {self.used} taken")
        self.used -= amount
        for waiter in list(self._waiting):
            needed, limit, granted = waiter
            if granted.done():  # cancelled, not yet removed by its caller
                self._waiting.remove(waiter)
            elif self.used + needed <= limit:
                self._waiting.remove(waiter)
                self._take(needed)
                granted.set_result(None)

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def _take(self, amount: int) -> None:
        self.used += amount
        self.peak = max(self.peak, self.used)


@dataclass
class _Look(Generic[T]):
    task: asyncio.Task[T]
    callers: int = 0


class Downloads:
    """The photos being downloaded and described, all chats together, and the bytes they hold."""

    def __init__(
        self, total: int, max_bytes: int, *, wait: float = DOWNLOAD_WAIT_S, album_share: float = ALBUM_SHARE
    ) -> None:
        if total < max_bytes:
            log.warning("download budget of %d bytes < the largest file, %d: raised to it", total, max_bytes)
        self.budget = ByteBudget(max(total, max_bytes))
        self.max_bytes = max_bytes
        self.album_ceiling = max(max_bytes, int(self.budget.total * album_share))  # room for any one album photo
        self.wait = wait
        self._looks: dict[str, _Look[Any]] = {}
        self.started = 0  # looks begun, each one download (for metrics and tests)

    def cost(self, photo: PhotoFile) -> int:
        """What a photo takes: its declared size, else the most the bot downloads. A declared size over that is
        refused before any download (the fetch says "too big"), so it takes nothing."""
        if photo.size is None:
            return self.max_bytes
        return 0 if photo.size > self.max_bytes else max(photo.size, 0)

    async def look(
        self,
        photo: PhotoFile,
        fetch: Callable[[PhotoFile], Awaitable[Data]],
        describe: Callable[[Data], Awaitable[T]],
        *,
        key: str | None = None,
    ) -> T:
        """`describe(await fetch(photo))`, its bytes within the budget; Busy when no room came within the wait.
        A look at the same file already under way is joined, not repeated, and its result (or error) shared;
        `key` (default: the file's unique id) tells looks that make different things of the same file apart."""
        key = key or photo.file_unique_id
        running = self._looks.get(key)
        if running is None:
            cost = self.cost(photo)
            await self.budget.acquire(cost, self.wait, self.album_ceiling if photo.media_group_id else None)
            running = self._looks.get(key)  # begun by another while this one waited for room
            if running is not None:
                self.budget.release(cost)
            else:
                running = self._start(key, self._fetch_and_describe(photo, cost, fetch, describe))
        running.callers += 1
        try:
            return await asyncio.shield(running.task)
        finally:
            running.callers -= 1
            if not running.callers and not running.task.done():
                running.task.cancel()  # every caller gave up (cancelled): its bytes go back as it stops

    async def _fetch_and_describe(
        self,
        photo: PhotoFile,
        cost: int,
        fetch: Callable[[PhotoFile], Awaitable[Data]],
        describe: Callable[[Data], Awaitable[T]],
    ) -> T:
        try:
            data = await fetch(photo)
            return await describe(data)
        finally:  # described or failed: the bytes are gone with this frame
            self.budget.release(cost)

    def _start(self, key: str, work: Awaitable[T]) -> _Look[T]:
        self.started += 1
        running = _Look(asyncio.ensure_future(work))

        def done(task: asyncio.Task[T]) -> None:
            if self._looks.get(key) is running:
                del self._looks[key]  # a later request looks again: only concurrent ones share
            if not task.cancelled():
                task.exception()  # retrieved here: a look whose callers all left still fails quietly

        running.task.add_done_callback(done)
        self._looks[key] = running
        return running
