"""Album slots (bot/adapter/albums): per sender, for all senders together, and what a photo that finds none hears.

Fast, no world: the looks are stand-ins that wait for the test, and each album's photos are what its reply
would be built from (the bot's replies over the fake Bot API: tests/test_bot.py, tests/test_faults.py).
"""

from __future__ import annotations

import asyncio
import datetime

import pytest
from telegram import Chat, Message

from bot.adapter import albums as albums_module
from bot.adapter.albums import ALBUM_SIZE, Album, Albums
from bot.core.incoming import PhotoFile, PhotoMessage, Where
from clipchat.errors import Busy
from clipchat.facts import PhotoFacts
from clipchat.kinds import ChatKind
from tests.bot_helpers import eventually

GROUP = -100777


class Looks:
    """Stand-in looks that run until the test lets them go, counting how many run at once."""

    def __init__(self) -> None:
        self.running = self.peak = self.started = 0
        self.go = asyncio.Event()

    async def look(self) -> PhotoFacts | None:
        self.running += 1
        self.started += 1
        self.peak = max(self.peak, self.running)
        try:
            await self.go.wait()
            return None
        finally:
            self.running -= 1


def album_photo(sender: int, album: str, number: int) -> tuple[Message, PhotoMessage]:
    message = Message(
        message_id=number, date=datetime.datetime.now(datetime.UTC), chat=Chat(GROUP, ChatKind.SUPERGROUP)
    )
    where = Where(GROUP, ChatKind.SUPERGROUP, sender)
    photo = PhotoFile(number, f"file-{sender}-{number}", f"unique-{sender}-{number}", media_group_id=album)
    return message, PhotoMessage(where, photo, "", addressed=True)


async def send_album(
    albums: Albums, looks: Looks, sender: int, finished: list[Album], photos: int = ALBUM_SIZE, name: str = "a"
) -> None:
    """One sender's album, each photo added as its handler would: one after another."""

    async def finish(album: Album) -> None:
        await asyncio.gather(*(task for _, task in album.photos), return_exceptions=True)
        finished.append(album)

    for number in range(photos):
        message, incoming = album_photo(sender, f"{name}-{sender}", sender * 100 + number)
        await albums.add(message, f"{name}-{sender}", incoming, looks.look(), finish)


async def test_album_photos_of_many_senders_are_capped_together_and_their_queues_move_on():
    """One person writing as 6 channels had 60 album photos downloading at once; now 12, and every album
    still holds all its photos (the rest wait in their albums, not in their senders' queues)."""
    albums, looks, finished = Albums(wait=0.05, in_flight=12), Looks(), []
    handlers = [asyncio.ensure_future(send_album(albums, looks, -100500 - n, finished)) for n in range(6)]
    await asyncio.wait_for(asyncio.gather(*handlers), 2)  # every photo added: no handler waited for the cap
    await asyncio.sleep(0.1)
    assert (looks.running, looks.peak) == (12, 12)
    looks.go.set()
    await eventually(lambda: len(finished) == 6, what="six albums answered")
    assert sorted(len(album.photos) for album in finished) == [ALBUM_SIZE] * 6
    assert looks.started == 60 and looks.peak == 12


async def test_a_photo_that_finds_no_slot_in_time_is_busy_in_its_albums_reply(monkeypatch):
    """Past the wait for a slot the photo was dropped from its album, and in a group nobody heard why."""
    monkeypatch.setattr(albums_module, "SLOT_TIMEOUT_S", 0.1)
    albums, looks, finished = Albums(wait=0.05, in_flight=3), Looks(), []
    await send_album(albums, looks, -100500, finished, photos=4)  # the 4th waits for one of all senders' slots
    [album] = albums._unsettled
    last = album.photos[3][1]
    await eventually(last.done, what="the fourth photo given up on")
    assert isinstance(last.exception(), Busy) and looks.running == 3
    looks.go.set()
    await eventually(lambda: finished == [album], what="the album answered")
    assert len(album.photos) == 4 and [task.result() for _, task in album.photos[:3]] == [None] * 3


async def test_a_sender_whose_slots_stay_full_hears_busy_in_an_album_not_nothing(monkeypatch):
    monkeypatch.setattr(albums_module, "SLOT_TIMEOUT_S", 0.1)
    albums, looks, finished = Albums(wait=0.05), Looks(), []
    await send_album(albums, looks, -100500, finished)  # the sender's 10 slots, held
    await send_album(albums, looks, -100500, finished, photos=1, name="b")  # an 11th photo waits 0.1 s for one
    await eventually(lambda: finished, what="the busy album answered")
    [busy] = finished
    assert len(busy.photos) == 1 and isinstance(busy.photos[0][1].exception(), Busy)
    looks.go.set()
    await eventually(lambda: len(finished) == 2, what="the held album answered")


async def test_waiting_for_an_album_that_never_settles_ends_in_busy_not_a_hang():
    """A question, or `/forget this`, after an album waited for the album's reply with no deadline: an album
    whose photos never finished held that command, and its sender's queue, for good."""
    albums, looks, finished = Albums(wait=0.05, settle_within=0.2), Looks(), []
    await send_album(albums, looks, -100500, finished, photos=2)  # its looks never end, until the test says
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(Busy):  # "try again in a minute", within the bound
        await asyncio.wait_for(albums.settled(GROUP, -100500), 5)
    with pytest.raises(Busy):  # the whole /forget waits for the same album, as long
        await asyncio.wait_for(albums.settled_sender(-100500), 5)
    assert loop.time() - started < 2
    looks.go.set()
    await eventually(lambda: finished, what="the album answered")
    await asyncio.wait_for(albums.settled(GROUP, -100500), 1)  # settled now: nothing to wait for
