"""Albums (media groups) arrive as one message per photo; collect them into one reply.

Each photo starts downloading and describing at once (so an album shares a
batch), and the album is answered when no new photo has come for `wait` seconds.
A sender has at most `ALBUM_SIZE` album photos in flight: the handler of the next one
waits for a slot, holding that sender's queue, so albums cannot bypass the per-user
limit that bounds everyone else's memory and model time.
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
    photos: list[tuple[PhotoFile, asyncio.Task[PhotoFacts | None]]] = field(default_factory=list)  # None: not kept
    last_seen: float = field(default_factory=time.monotonic)
    done: asyncio.Event = field(default_factory=asyncio.Event)


class Albums:
    def __init__(self, wait: float) -> None:
        self.wait = wait
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
        """Start looking at one photo of album `album_id` (its media group) once its sender has a free slot."""
        sender = incoming.where.user_id if incoming.where.user_id is not None else incoming.where.chat_id
        slots = self._slots.setdefault(sender, _Slots())
        slots.users += 1
        try:
            async with asyncio.timeout(SLOT_TIMEOUT_S):
                await slots.free.acquire()
        except TimeoutError:
            self._leave(sender, slots)
            if asyncio.iscoroutine(looking):
                looking.close()
            raise Busy(detail=f"album slots of {sender} stayed full for {SLOT_TIMEOUT_S:.0f} s") from None
        slots.looking += 1
        task = self._keep(asyncio.ensure_future(looking))
        task.add_done_callback(lambda _: self._release(sender, slots))
        key = (message.chat_id, album_id)
        album = self._open.get(key)
        if album is None:
            album = self._open[key] = Album(incoming.where, message, incoming.text, incoming.addressed)
            self._unsettled.append(album)
            self._keep(asyncio.create_task(self._finish_when_quiet(key, album, finish), name=f"album-{key}"))
        album.photos.append((incoming.photo, task))
        album.text = album.text or incoming.text
        album.addressed = album.addressed or incoming.addressed
        album.last_seen = time.monotonic()

    def addressed(self, chat_id: int, media_group_id: str) -> bool:
        """Whether an album still taking photos was spoken to (its caption comes with one photo only)."""
        album = self._open.get((chat_id, media_group_id))
        return album is not None and album.addressed

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
        """Wait for this user's albums here, so that a question after an album is about it."""
        for album in [a for a in self._unsettled if a.where.chat_id == chat_id and a.where.user_id == user_id]:
            await album.done.wait()

    async def settled_sender(self, sender: int) -> None:
        """Wait for this sender's albums in every chat, replies and records written (before /forget)."""
        for album in [a for a in self._unsettled if a.where.user_id == sender]:
            await album.done.wait()

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
