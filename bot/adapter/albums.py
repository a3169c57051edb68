"""Albums (media groups) arrive as one message per photo; collect them into one reply.

Each photo starts downloading and describing at once (so an album shares a
batch), and the album is answered when no new photo has come for `wait` seconds.
A sender has at most `ALBUM_SIZE` album photos in flight: the handler of the next one
waits for a slot, holding that sender's queue, so albums cannot bypass the per-user
limit that bounds everyone else's memory and model time. Since one person can be many
senders (each channel they write as, each group they are an anonymous admin of), all
senders together have at most `ALBUM_PHOTOS_IN_FLIGHT` looked at: past that, a photo waits
for a slot in its own task, already in its album, holding no bytes, and its sender's queue
moves on. Every wait ends within `SLOT_TIMEOUT_S`; a photo that found no slot is in its
album's reply as "busy, try again", never dropped. Whoever waits for an album's reply (a question
right after it, /forget) hears "busy" past `settle_within`, never waits for good.

Nothing a slot's holder waits for needs an album, or a slot: slots come back as photos are
described (`core/downloads` bounds that), whatever their albums are doing.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from telegram import Message

from clipchat.errors import Busy
from clipchat.facts import PhotoFacts

from ..core.incoming import PhotoFile, PhotoMessage, Where

ALBUM_SIZE = 10  # Telegram's most photos in one album
ALBUM_PHOTOS_IN_FLIGHT = 50  # all senders together: five full albums
SLOT_TIMEOUT_S = 300.0  # longer than any photo takes; past it the sender hears "busy"


@dataclass
class _Slots:
    free: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(ALBUM_SIZE))
    users: int = 0  # photos holding a slot or waiting for one
    looking: int = 0  # photos holding a slot


@dataclass
class Album:
    where: Where
    first: Message  # the reply goes under the album's first photo
    text: str  # a caption the user wrote on any of the photos
    addressed: bool
    photos: list[tuple[PhotoFile, asyncio.Future[PhotoFacts | None]]] = field(default_factory=list)  # None: not kept
    last_seen: float = field(default_factory=time.monotonic)
    done: asyncio.Event = field(default_factory=asyncio.Event)


class Albums:
    def __init__(
        self, wait: float, in_flight: int = ALBUM_PHOTOS_IN_FLIGHT, settle_within: float = SLOT_TIMEOUT_S
    ) -> None:
        self.wait = wait
        self.settle_within = settle_within  # the longest anyone waits for albums to settle before hearing "busy"
        self._all = asyncio.Semaphore(in_flight)  # album photos looked at, every sender together
        self._open: dict[tuple[int, str], Album] = {}  # still taking photos
        self._unsettled: list[Album] = []  # taking photos, or being answered and written down
        self._tasks: set[asyncio.Task] = set()  # the loop keeps only weak references to tasks
        self._slots: dict[int, _Slots] = {}  # per sender with album photos in flight or waiting

    async def add(
        self,
        message: Message,
        album_id: str,
        incoming: PhotoMessage,
        looking: Awaitable[PhotoFacts | None],
        finish: Callable[[Album], Awaitable[None]],
    ) -> None:
        """Put one photo of album `album_id` (its media group) in its album once its sender has a free slot, and
        start looking at it once one of all senders' is free; a photo that found none in time is "busy" there."""
        sender = incoming.where.user_id if incoming.where.user_id is not None else incoming.where.chat_id
        slots = self._slots.setdefault(sender, _Slots())
        slots.users += 1
        result: asyncio.Future[PhotoFacts | None]
        try:
            async with asyncio.timeout(SLOT_TIMEOUT_S):
                await slots.free.acquire()
        except TimeoutError:
            self._leave(sender, slots)
            _drop(looking)
            result = asyncio.get_running_loop().create_future()
            result.set_exception(Busy(detail=f"album slots of {sender} stayed full for {SLOT_TIMEOUT_S:.0f} s"))
        except BaseException:
            self._leave(sender, slots)
            _drop(looking)
            raise
        else:
            slots.looking += 1
            result = self._keep(asyncio.create_task(self._in_turn(looking)))
            result.add_done_callback(lambda _: self._release(sender, slots))
        key = (message.chat_id, album_id)
        album = self._open.get(key)
        if album is None:
            album = self._open[key] = Album(incoming.where, message, incoming.text, incoming.addressed)
            self._unsettled.append(album)
            self._keep(asyncio.create_task(self._finish_when_quiet(key, album, finish), name=f"album-{key}"))
        album.photos.append((incoming.photo, result))
        album.text = album.text or incoming.text
        album.addressed = album.addressed or incoming.addressed
        album.last_seen = time.monotonic()

    def addressed(self, chat_id: int, media_group_id: str) -> bool:
        """Whether an album still taking photos was spoken to (its caption comes with one photo only)."""
        album = self._open.get((chat_id, media_group_id))
        return album is not None and album.addressed

    async def _in_turn(self, looking: Awaitable[PhotoFacts | None]) -> PhotoFacts | None:
        """The photo looked at once fewer than `ALBUM_PHOTOS_IN_FLIGHT` are, all senders together."""
        try:
            async with asyncio.timeout(SLOT_TIMEOUT_S):
                await self._all.acquire()
        except TimeoutError:
            _drop(looking)
            raise Busy(detail=f"album slots of all senders stayed full for {SLOT_TIMEOUT_S:.0f} s") from None
        except BaseException:
            _drop(looking)
            raise
        try:
            return await looking
        finally:
            self._all.release()

    def _release(self, sender: int, slots: _Slots) -> None:
        slots.looking -= 1
        slots.free.release()
        self._leave(sender, slots)

    def _leave(self, sender: int, slots: _Slots) -> None:
        slots.users -= 1
        if not slots.users:
            del self._slots[sender]  # nobody holds or waits: forget the idle sender

    def _keep(self, task: asyncio.Task) -> asyncio.Task:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def settled(self, chat_id: int, user_id: int | None) -> None:
        """Wait for this user's albums here, so that a question after an album is about it; Busy past
        `settle_within`."""
        await self._settle([a for a in self._unsettled if a.where.chat_id == chat_id and a.where.user_id == user_id])

    async def settled_sender(self, sender: int) -> None:
        """Wait for this sender's albums in every chat, replies and records written (before /forget); Busy past
        `settle_within`."""
        await self._settle([a for a in self._unsettled if a.where.user_id == sender])

    async def _settle(self, albums: list[Album]) -> None:
        try:
            async with asyncio.timeout(self.settle_within):
                for album in albums:
                    await album.done.wait()
        except TimeoutError:  # an album stuck somewhere must not hold the command, and its sender's queue, forever
            raise Busy(detail=f"an album still unanswered after {self.settle_within:.0f} s") from None

    async def _finish_when_quiet(self, key, album: Album, finish) -> None:
        try:
            # A quiet period that each new photo extends: no event to wait for, only the clock.
            while (remaining := album.last_seen + self.wait - time.monotonic()) > 0:  # noqa: ASYNC110
                await asyncio.sleep(remaining)
            del self._open[key]
            await finish(album)
        finally:
            self._unsettled.remove(album)
            album.done.set()


def _drop(looking: Awaitable[object]) -> None:
    """A look that will never start: closed, so that no "never awaited" warning blames it."""
    if asyncio.iscoroutine(looking):
        looking.close()
