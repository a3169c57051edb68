"""The photo under discussion, for an answer model that sees images: fetched again by its Telegram file id.

    photo = await pixels.photo_of(services, chat, image, forgotten)   # a small JPEG, or None: words alone

The bot keeps no photo's bytes on disk, only its caption, tags and CLIP vector. With a model that sees images
(`Models.sees_images`) a photo is downscaled as it is described (512 px, a JPEG of some 10-60 KB: `look_keeping`)
and kept in a small in-memory LRU (`Pixels`), for the question in its caption and the follow-ups; a question
about one no longer kept downloads it again as photos are downloaded: within the byte budget, one download per
file at a time (`core/downloads`), the whole of it within `answer_photo_wait_s`. A photo Telegram no longer serves, or one slower than the wait, costs no answer: the
question is answered from the words, and one line is logged.

/forget drops its person's entries (`drop_person`), /forget this its photo's (`drop_file`); another process's
/forget is noticed by the count of /forgets the database records, which every question reads (`settle`), as the
engine's caches do (`engine.Models`).
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from clipchat.errors import BadImage, UserError
from clipchat.facts import PhotoFacts
from storage import ImageRecord

from ..engine import DescribeRequest
from ..engine.served import downscaled
from .incoming import Chat, PhotoFile, Where

if TYPE_CHECKING:
    from .services import Services

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Entry:
    file_unique_id: str  # an image id the database handed out again (SQLite may) is not this photo
    chat_id: int
    sender_id: int | None
    jpeg: bytes


class Pixels:
    """Downscaled photos by image id, the least recently used going first once they pass `total` bytes."""

    def __init__(self, total: int) -> None:
        self.total = max(total, 0)  # 0: nothing kept, every question downloads its photo
        self.used = 0
        self.epoch = 0  # grows with each /forget: a download begun before one keeps nothing (`put`)
        self._entries: OrderedDict[int, _Entry] = OrderedDict()
        self._forgotten: int | None = None  # the count of /forgets the entries were kept under

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, image: ImageRecord) -> bytes | None:
        entry = self._entries.get(image.id)
        if entry is None or entry.file_unique_id != image.file_unique_id:
            return None
        self._entries.move_to_end(image.id)
        return entry.jpeg

    def put(self, image_id: int, entry: _Entry, epoch: int) -> None:
        """Keep `entry`, unless it is too big or something was forgotten since `epoch` (its photo, maybe)."""
        if len(entry.jpeg) > self.total or epoch != self.epoch:
            return
        self._drop(lambda key, _entry: key == image_id)
        self._entries[image_id] = entry
        self.used += len(entry.jpeg)
        while self.used > self.total:
            _key, oldest = self._entries.popitem(last=False)
            self.used -= len(oldest.jpeg)

    def settle(self, forgotten: int) -> None:
        """Empty the entries if someone was forgotten (here or in another process) since they were kept. The first
        count read is taken as it is: what was kept before it was fetched moments ago, from photos stored now."""
        if self._forgotten is not None and forgotten != self._forgotten:
            self.clear()
        self._forgotten = forgotten

    def drop_person(self, user_id: int) -> None:
        """What /forget deletes: the photos they sent, and those of their private chat (whose id is theirs)."""
        self._drop(lambda _key, entry: user_id in (entry.sender_id, entry.chat_id))

    def drop_file(self, file_unique_id: str) -> None:
        """/forget this: that photo, wherever it was sent (another chat's copy is downloaded again if asked about)."""
        self._drop(lambda _key, entry: entry.file_unique_id == file_unique_id)

    def clear(self) -> None:
        self._drop(lambda _key, _entry: True)

    def _drop(self, which: Callable[[int, _Entry], bool]) -> None:
        self.epoch += 1
        for key, entry in list(self._entries.items()):
            if which(key, entry):
                del self._entries[key]
                self.used -= len(entry.jpeg)


async def photo_of(services: Services, chat: Chat, image: ImageRecord | None, forgotten: int) -> bytes | None:
    """The photo under discussion, downscaled, when the answer model sees images; None otherwise, and when it
    could not be had in time (the question is answered from the words)."""
    if image is None or not services.models.sees_images:
        return None
    kept = services.pixels
    kept.settle(forgotten)
    if (jpeg := kept.get(image)) is not None:
        return jpeg
    epoch = kept.epoch
    photo = PhotoFile(image.message_id, image.file_id, image.file_unique_id, image.media_kind)
    limits = services.models.limits
    wait = services.settings.answer_photo_wait_s
    try:
        async with asyncio.timeout(wait):
            # its own key: a look at the same file being described (PhotoFacts) is another look
            jpeg = await services.downloads.look(
                photo,
                chat.fetch,
                lambda data: asyncio.to_thread(downscaled, data, limits),
                key=f"pixels:{photo.file_unique_id}",
            )
    except TimeoutError:
        log.info("image %s: its photo took over %g s to download; answered from the words", image.id, wait)
        return None
    except UserError as error:  # gone from Telegram, too big, unreadable, the download budget full
        log.info("image %s: its photo could not be had (%s); answered from the words", image.id, error.detail)
        return None
    kept.put(image.id, _Entry(image.file_unique_id, image.chat_id, image.sender_id, jpeg), epoch)
    return jpeg


async def look_keeping(services: Services, chat: Chat, photo: PhotoFile) -> tuple[PhotoFacts, bytes | None]:
    """A photo fetched and described (`photos.look`) and, from the same bytes, downscaled for an answer model that
    sees images: for the question in its caption, and kept (`keep`) for the follow-ups."""
    limits = services.models.limits

    async def both(data: bytes) -> tuple[PhotoFacts, bytes | None]:
        facts = await services.models.describe(DescribeRequest(data))
        try:
            return facts, await asyncio.to_thread(downscaled, data, limits)
        except BadImage as error:  # described, so rare: its questions go with words alone
            log.info("a photo was described but not downscaled: %s", error.detail)
            return facts, None

    # its own key: a look that makes facts alone of the same file is another look
    return await services.downloads.look(photo, chat.fetch, both, key=f"both:{photo.file_unique_id}")


def keep(services: Services, image_id: int, photo: PhotoFile, where: Where, jpeg: bytes | None, epoch: int) -> None:
    """A photo just stored as `image_id`, downscaled when it was fetched, kept for the follow-ups about it."""
    if jpeg is not None:
        services.pixels.put(image_id, _Entry(photo.file_unique_id, where.chat_id, where.user_id, jpeg), epoch)
