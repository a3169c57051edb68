"""The download budget and single-flight (bot/core/downloads): fast, no world.

The single-flight tests fetch through the real adapter (`TelegramChat`) from the fake Bot API server.
"""

from __future__ import annotations

import asyncio

import pytest
from telegram import Bot, Message

from bot.core.downloads import ByteBudget, Downloads
from bot.core.incoming import PhotoFile
from clipchat.errors import Busy
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


async def test_a_wait_for_the_budget_is_bounded_then_busy():
    budget = ByteBudget(10 * MB)
    await budget.acquire(8 * MB, wait=1)
    with pytest.raises(Busy):
        await budget.acquire(4 * MB, wait=0.05)
    assert budget.used == 8 * MB  # the refused one took nothing, and left no waiter behind
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


async def test_the_budget_never_goes_negative_nor_takes_what_can_never_fit():
    budget = ByteBudget(10 * MB)
    with pytest.raises(ValueError):
        budget.release(1)
    with pytest.raises(ValueError):
        await budget.acquire(11 * MB, wait=1)
    with pytest.raises(ValueError):
        await budget.acquire(-1, wait=1)
    await budget.acquire(1 * MB, wait=1)
    with pytest.raises(ValueError):
        budget.release(2 * MB)
    assert budget.used == 1 * MB


async def test_a_cancelled_waiter_leaves_nothing_taken():
    budget = ByteBudget(10 * MB)
    await budget.acquire(10 * MB, wait=1)
    waiter = asyncio.ensure_future(budget.acquire(5 * MB, wait=5))
    await asyncio.sleep(0.01)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    budget.release(10 * MB)
    assert budget.used == 0


def photo(unique: str, size: int | None, file_id: str | None = None) -> PhotoFile:
    return PhotoFile(1, file_id or f"file-{unique}", unique, size=size)


async def test_a_download_takes_its_declared_size_until_the_block_ends():
    downloads = Downloads(100 * MB, max_bytes=20 * MB)

    async def fetch(_: PhotoFile) -> bytes:
        assert downloads.budget.used == 16 * MB  # taken before the download starts
        return b"x"

    async with downloads.fetched(photo("a", 16 * MB), fetch) as data:
        assert data == b"x" and downloads.budget.used == 16 * MB
    assert downloads.budget.used == 0
    async with downloads.fetched(photo("b", None), _returns(b"y")):
        assert downloads.budget.used == 20 * MB  # undeclared: the largest file the bot takes


def _returns(data: bytes):
    async def fetch(_: PhotoFile) -> bytes:
        return data

    return fetch


async def test_a_failed_download_gives_its_bytes_back():
    downloads = Downloads(100 * MB, max_bytes=20 * MB)

    async def fail(_: PhotoFile) -> bytes:
        raise OSError("gone")

    with pytest.raises(OSError):
        async with downloads.fetched(photo("a", 16 * MB), fail):
            pass
    assert downloads.budget.used == 0
    async with downloads.fetched(photo("a", 16 * MB), _returns(b"ok")) as data:  # tried again, not remembered
        assert data == b"ok"


async def test_a_download_with_no_room_within_the_wait_is_busy():
    downloads = Downloads(32 * MB, max_bytes=20 * MB, wait=0.05)
    async with downloads.fetched(photo("a", 20 * MB), _returns(b"a")):
        with pytest.raises(Busy):
            async with downloads.fetched(photo("b", 20 * MB), _returns(b"b")):
                pass
    assert downloads.budget.used == 0


async def test_one_file_is_downloaded_once_for_concurrent_requests_and_charged_once():
    downloads = Downloads(100 * MB, max_bytes=20 * MB)
    release = asyncio.Event()
    calls = []

    async def slow(p: PhotoFile) -> bytes:
        calls.append(p.file_id)
        await release.wait()
        return b"shared"

    async def look(file_id: str) -> bytes:
        async with downloads.fetched(photo("same", 10 * MB, file_id), slow) as data:
            await asyncio.sleep(0.01)
            return bytes(data)

    looks = [asyncio.ensure_future(look(f"id-{n}")) for n in range(3)]
    await asyncio.sleep(0.01)
    assert downloads.budget.used == 10 * MB
    release.set()
    assert await asyncio.gather(*looks) == [b"shared"] * 3
    assert (len(calls), downloads.started, downloads.budget.used) == (1, 1, 0)


async def test_one_cancelled_sharer_leaves_the_download_to_the_others():
    downloads = Downloads(100 * MB, max_bytes=20 * MB)
    release = asyncio.Event()

    async def slow(_: PhotoFile) -> bytes:
        await release.wait()
        return b"data"

    async def look() -> bytes:
        async with downloads.fetched(photo("same", 1 * MB), slow) as data:
            return bytes(data)

    first, second = asyncio.ensure_future(look()), asyncio.ensure_future(look())
    await asyncio.sleep(0.01)
    first.cancel()
    await asyncio.sleep(0.01)
    release.set()
    assert await second == b"data"
    assert downloads.budget.used == 0


async def test_two_messages_of_one_file_make_one_getFile_call(telegram):
    """Through the adapter and PTB against the fake Bot API: the attacker's re-sent file_id is fetched once."""
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
            async with downloads.fetched(PhotoFile(message.message_id, file_id, unique, size=size), chat.fetch) as got:
                assert downloads.budget.used == size
                return len(got)

        assert await asyncio.gather(look(1), look(2)) == [len(data)] * 2
    assert len(telegram.sent("getFile")) == 1
    assert downloads.budget.used == 0
