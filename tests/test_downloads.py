"""The download budget and one look per file (bot/core/downloads): fast, no world.

The last test fetches through the real adapter (`TelegramChat`, PTB) from the fake Bot API server.
"""

from __future__ import annotations

import asyncio

import pytest
from telegram import Bot, Message

from bot.core.downloads import ByteBudget, Downloads
from bot.core.incoming import PhotoFile
from clipchat.errors import Busy, Unavailable
from tests.conftest import BOT_TOKEN
from tests.fake_telegram import private, user

MB = 2**20


async def test_the_budget_grants_what_fits_and_takes_it_back():
    budget = ByteBudget(10 * MB)
    await budget.acquire(6 * MB, wait=1)
    await budget.acquire(4 * MB, wait=1)
    assert (budget.used, budget.peak) == (10 * MB, 10 * MB)
    budget.release(6 * MB)
    budget.release(4 * MB)
    assert budget.used == 0


async def test_a_wait_for_the_budget_is_bounded_then_busy_and_leaves_nothing_behind():
    budget = ByteBudget(10 * MB)
    await budget.acquire(8 * MB, wait=1)
    with pytest.raises(Busy):
        await budget.acquire(4 * MB, wait=0.05)
    assert (budget.used, budget.waiting) == (8 * MB, 0)
    budget.release(8 * MB)
    await budget.acquire(10 * MB, wait=0.05)


async def test_a_waiter_gets_its_bytes_when_they_come_back_and_a_small_one_passes_a_large_one():
    budget = ByteBudget(10 * MB)
    await budget.acquire(8 * MB, wait=1)
    large = asyncio.ensure_future(budget.acquire(9 * MB, wait=5))
    small = asyncio.ensure_future(budget.acquire(1 * MB, wait=5))
    await asyncio.sleep(0.01)
    assert small.done() and not large.done()  # the small one fit beside the 8 MB at once
    budget.release(8 * MB)
    budget.release(1 * MB)
    await asyncio.wait_for(large, 1)
    assert budget.used == 9 * MB and budget.peak <= budget.total


async def test_a_ceiling_keeps_room_that_only_others_may_take():
    budget = ByteBudget(10 * MB)
    await budget.acquire(6 * MB, wait=1, ceiling=7 * MB)
    with pytest.raises(Busy):  # 6 + 2 > 7: the capped kind waits, and hears "busy"
        await budget.acquire(2 * MB, wait=0.05, ceiling=7 * MB)
    await budget.acquire(4 * MB, wait=0.05)  # anyone else still finds the rest
    capped = asyncio.ensure_future(budget.acquire(1 * MB, wait=5, ceiling=7 * MB))
    await asyncio.sleep(0.01)
    budget.release(4 * MB)  # 6 + 1 <= 7 again
    await asyncio.wait_for(capped, 1)
    assert budget.used == 7 * MB


async def test_the_budget_never_goes_negative_nor_takes_what_can_never_fit():
    budget = ByteBudget(10 * MB)
    with pytest.raises(ValueError):
        budget.release(1)
    with pytest.raises(ValueError):
        await budget.acquire(11 * MB, wait=1)
    with pytest.raises(ValueError):
        await budget.acquire(8 * MB, wait=1, ceiling=7 * MB)
    with pytest.raises(ValueError):
        await budget.acquire(-1, wait=1)
    await budget.acquire(1 * MB, wait=1)
    with pytest.raises(ValueError):
        budget.release(2 * MB)
    assert budget.used == 1 * MB


async def test_a_cancelled_waiter_leaves_nothing_taken_and_the_next_one_is_served():
    budget = ByteBudget(10 * MB)
    await budget.acquire(10 * MB, wait=1)
    cancelled = asyncio.ensure_future(budget.acquire(5 * MB, wait=5))
    served = asyncio.ensure_future(budget.acquire(5 * MB, wait=5))
    await asyncio.sleep(0.01)
    cancelled.cancel()
    budget.release(10 * MB)  # in the same turn as the cancel: the cancelled waiter takes nothing
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    await asyncio.wait_for(served, 1)
    assert (budget.used, budget.waiting) == (5 * MB, 0)


async def test_a_waiter_granted_as_it_gives_up_gives_its_bytes_back():
    budget = ByteBudget(10 * MB)
    await budget.acquire(10 * MB, wait=1)
    waiter = asyncio.ensure_future(budget.acquire(5 * MB, wait=5))
    await asyncio.sleep(0.01)
    budget.release(10 * MB)  # granted ...
    waiter.cancel()  # ... and cancelled before it could run
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert budget.used == 0


def photo(unique: str, size: int | None, file_id: str | None = None, album: str | None = None) -> PhotoFile:
    return PhotoFile(1, file_id or f"file-{unique}", unique, media_group_id=album, size=size)


def returns(data: bytes):
    async def fetch(_: PhotoFile) -> bytes:
        return data

    return fetch


async def length(data: bytes) -> int:
    return len(data)


async def test_a_photo_takes_its_declared_size_before_the_download_until_it_is_described():
    downloads = Downloads(100 * MB, max_bytes=20 * MB)
    seen = []

    async def fetch(_: PhotoFile) -> bytes:
        seen.append(("fetch", downloads.budget.used))  # taken before the download starts
        return b"x"

    async def describe(data: bytes) -> bytes:
        seen.append(("describe", downloads.budget.used))
        return data

    assert await downloads.look(photo("a", 16 * MB), fetch, describe) == b"x"
    assert seen == [("fetch", 16 * MB), ("describe", 16 * MB)] and downloads.budget.used == 0
    seen.clear()
    await downloads.look(photo("b", None), fetch, describe)  # undeclared: the largest file the bot takes
    assert seen[0] == ("fetch", 20 * MB)
    seen.clear()
    await downloads.look(photo("c", 30 * MB), fetch, describe)  # too big: refused by the fetch, takes nothing
    assert seen[0] == ("fetch", 0)


async def test_a_failed_download_or_description_gives_its_bytes_back_and_is_tried_again_later():
    downloads = Downloads(100 * MB, max_bytes=20 * MB)

    async def gone(_: PhotoFile) -> bytes:
        raise Unavailable(detail="404")

    async def broken(_: bytes) -> int:
        raise ValueError("cannot decode")

    with pytest.raises(Unavailable):
        await downloads.look(photo("a", 16 * MB), gone, length)
    with pytest.raises(ValueError):
        await downloads.look(photo("a", 16 * MB), returns(b"ok"), broken)
    assert downloads.budget.used == 0
    assert await downloads.look(photo("a", 16 * MB), returns(b"ok"), length) == 2  # not remembered as failed
    assert downloads.started == 3


async def test_a_photo_with_no_room_within_the_wait_is_busy_and_downloads_nothing():
    downloads = Downloads(32 * MB, max_bytes=20 * MB, wait=0.05)
    release = asyncio.Event()
    fetched = []

    async def slow(p: PhotoFile) -> bytes:
        fetched.append(p.file_unique_id)
        await release.wait()
        return b"a"

    first = asyncio.ensure_future(downloads.look(photo("a", 20 * MB), slow, length))
    await asyncio.sleep(0.01)
    with pytest.raises(Busy):
        await downloads.look(photo("b", 20 * MB), slow, length)
    release.set()
    assert await first == 1
    assert fetched == ["a"] and downloads.budget.used == 0


async def test_album_photos_leave_a_quarter_of_the_budget_to_everyone_else():
    downloads = Downloads(80 * MB, max_bytes=20 * MB, wait=0.05)
    release = asyncio.Event()

    async def held(_: PhotoFile) -> bytes:
        await release.wait()
        return b"x"

    album = [asyncio.ensure_future(downloads.look(photo(f"a{n}", 20 * MB, album="A"), held, length)) for n in range(3)]
    await asyncio.sleep(0.01)
    assert downloads.budget.used == 60 * MB
    with pytest.raises(Busy):  # a fourth album photo would pass three quarters
        await downloads.look(photo("a3", 20 * MB, album="B"), held, length)
    other = asyncio.ensure_future(downloads.look(photo("single", 20 * MB), held, length))
    await asyncio.sleep(0.01)
    assert downloads.budget.used == 80 * MB  # someone else's photo found room at once
    release.set()
    assert await asyncio.gather(*album, other) == [1, 1, 1, 1]
    assert downloads.budget.used == 0


async def test_one_file_is_looked_at_once_for_concurrent_requests_and_charged_once():
    downloads = Downloads(100 * MB, max_bytes=20 * MB)
    release = asyncio.Event()
    calls = []

    async def slow(p: PhotoFile) -> bytes:
        calls.append(p.file_id)
        await release.wait()
        return b"shared"

    async def describe(data: bytes) -> bytes:
        calls.append("describe")
        return data

    looks = [asyncio.ensure_future(downloads.look(photo("same", 10 * MB, f"id-{n}"), slow, describe)) for n in range(3)]
    await asyncio.sleep(0.01)
    assert downloads.budget.used == 10 * MB
    release.set()
    assert await asyncio.gather(*looks) == [b"shared"] * 3
    assert (calls, downloads.started, downloads.budget.used) == (["id-0", "describe"], 1, 0)


async def test_a_request_that_waited_for_room_joins_the_look_begun_meanwhile():
    downloads = Downloads(20 * MB, max_bytes=20 * MB)
    release = asyncio.Event()

    async def slow(p: PhotoFile) -> bytes:
        await release.wait()
        return p.file_unique_id.encode()

    blocker = asyncio.ensure_future(downloads.look(photo("big", 15 * MB), slow, length))
    await asyncio.sleep(0.01)
    waiting = [asyncio.ensure_future(downloads.look(photo("same", 10 * MB), slow, length)) for _ in range(2)]
    await asyncio.sleep(0.01)
    release.set()
    assert await asyncio.gather(blocker, *waiting) == [3, 4, 4]
    assert (downloads.started, downloads.budget.used, downloads.budget.peak) == (2, 0, 20 * MB)


async def test_one_cancelled_caller_leaves_the_look_to_the_others_and_the_last_one_stops_it():
    downloads = Downloads(100 * MB, max_bytes=20 * MB)
    release = asyncio.Event()
    stopped = asyncio.Event()

    async def slow(_: PhotoFile) -> bytes:
        try:
            await release.wait()
        except asyncio.CancelledError:
            stopped.set()
            raise
        return b"data"

    first, second = (asyncio.ensure_future(downloads.look(photo("same", 1 * MB), slow, length)) for _ in range(2))
    await asyncio.sleep(0.01)
    first.cancel()
    await asyncio.sleep(0.01)
    release.set()
    assert await second == 4 and downloads.budget.used == 0
    release.clear()
    alone = asyncio.ensure_future(downloads.look(photo("other", 1 * MB), slow, length))
    await asyncio.sleep(0.01)
    alone.cancel()
    await asyncio.wait_for(stopped.wait(), 1)  # nobody waits for it: it stops, and gives its bytes back
    await asyncio.sleep(0)
    assert downloads.budget.used == 0


async def test_two_messages_of_one_file_make_one_getFile_call(telegram):
    """Through the adapter and PTB against the fake Bot API: a re-sent file_id is fetched once."""
    from bot.adapter.telegram_chat import TelegramChat

    data = b"\x89PNG" + bytes(5 * MB)
    file_id, unique, size = telegram.add_file(data)
    telegram.latency["getFile"] = 0.2  # both requests arrive while the first is under way
    async with Bot(BOT_TOKEN, base_url=telegram.base_url, base_file_url=telegram.base_file_url) as bot:
        downloads = Downloads(64 * MB, max_bytes=20 * MB)

        async def look(number: int) -> int:
            raw = telegram.message(private(5000 + number), user(5000 + number), document=(file_id, unique, size))
            message = Message.de_json(raw, bot)
            chat = TelegramChat(message, retries=1, max_bytes=20 * MB)
            return await downloads.look(PhotoFile(message.message_id, file_id, unique, size=size), chat.fetch, length)

        assert await asyncio.gather(look(1), look(2)) == [len(data)] * 2
    assert len(telegram.sent("getFile")) == 1
    assert downloads.budget.used == 0
