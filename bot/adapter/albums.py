"""Albums (media groups) arrive as one message per photo; collect them into one reply.

Each photo starts downloading and describing at once (so an album shares a
batch), and the album is answered when no new photo has come for `wait` seconds.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from telegram import Message

from clipchat.facts import PhotoFacts

from ..core.incoming import PhotoFile, PhotoMessage, Where


@dataclass
class Album:
    where: Where
    first: Message  # the reply goes under the album's first photo
    text: str  # a caption the user wrote on any of the photos
    addressed: bool
    photos: list[tuple[PhotoFile, asyncio.Task[PhotoFacts]]] = field(default_factory=list)
    last_seen: float = field(default_factory=time.monotonic)
    done: asyncio.Event = field(default_factory=asyncio.Event)


class Albums:
    def __init__(self, wait: float) -> None:
        self.wait = wait
        self._open: dict[tuple[int, str], Album] = {}
        self._tasks: set[asyncio.Task] = set()  # the loop keeps only weak references to tasks

    def add(self, message: Message, incoming: PhotoMessage, looking: Awaitable[PhotoFacts],
            finish: Callable[[Album], Awaitable[None]]) -> None:
        key = (message.chat_id, message.media_group_id)
        album = self._open.get(key)
        if album is None:
            album = self._open[key] = Album(incoming.where, message, incoming.text, incoming.addressed)
            self._keep(asyncio.create_task(self._finish_when_quiet(key, album, finish), name=f"album-{key}"))
        album.photos.append((incoming.photo, self._keep(asyncio.ensure_future(looking))))
        album.text = album.text or incoming.text
        album.addressed = album.addressed or incoming.addressed
        album.last_seen = time.monotonic()

    def _keep(self, task: asyncio.Task) -> asyncio.Task:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def settled(self, chat_id: int, user_id: int | None) -> None:
        """Wait for this user's open albums here, so that a question after an album is about it."""
        for album in [a for (chat, _), a in self._open.items() if chat == chat_id and a.where.user_id == user_id]:
            await album.done.wait()

    async def _finish_when_quiet(self, key, album: Album, finish) -> None:
        try:
            while (remaining := album.last_seen + self.wait - time.monotonic()) > 0:
                await asyncio.sleep(remaining)
            del self._open[key]
            await finish(album)
        finally:
            album.done.set()
