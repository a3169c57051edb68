"""`clipchat db reindex` after a CLIP change, and /search while it runs: the real bot against the fake
Bot API server, the command run in-process (bot.ops.cli.main) on the bot's database."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import numpy as np
from sqlalchemy import delete, select, update

from clipchat.facts import PhotoFacts
from storage import EmbeddingIndex, ImageRecord, NewImage, save_image
from storage.models import ReindexRun
from storage.reindex import Waiting, reindex_running, replace_embedding, start_run
from tests.bot_helpers import eventually, send_photo, send_text
from tests.conftest import BOT_TOKEN
from tests.fake_telegram import private, user

RETIRED = "retired-clip#0123456789ab"  # the CLIP the bot ran before the operator changed it


def unit(index: int, dim: int = 8) -> np.ndarray:
    vector = np.zeros(dim, dtype=np.float32)
    vector[index] = 1.0
    return vector


async def test_search_sees_a_photo_reembedded_below_a_deleted_one(sessions) -> None:
    """A re-embedded photo joins the search index under its old id; a delete at the same time leaves the
    count and the newest id as they were, and the index must still notice."""
    async with sessions() as session:
        ids = [
            (
                await save_image(
                    session,
                    NewImage(
                        7,
                        7,
                        number,
                        f"file-{number}",
                        f"u-{number}",
                        PhotoFacts(f"photo {number}", (), unit(number), model),
                    ),
                )
            ).id
            for number, model in ((1, "new"), (2, RETIRED), (3, "new"))
        ]
        await session.commit()
    index = EmbeddingIndex()
    async with sessions() as session:
        assert [i for i, _ in await index.search(session, 7, "new", unit(2))] == [ids[0], ids[2]]
    async with sessions() as session:
        await session.execute(delete(ImageRecord).where(ImageRecord.id == ids[0]))
        assert await replace_embedding(session, Waiting(ids[1], 7, "file-2", RETIRED), unit(2), "new")
        await session.commit()
    async with sessions() as session:
        assert (await index.search(session, 7, "new", unit(2)))[0][0] == ids[1]


async def test_a_run_that_stopped_beating_is_not_announced(sessions) -> None:
    async with sessions() as session:
        run = await start_run(session, "new", chat_id=None)
        await session.commit()
        assert await reindex_running(session, "new", chat_id=5)
        assert not await reindex_running(session, "other", chat_id=5)  # it would not make them searchable here
        await session.execute(
            update(ReindexRun).where(ReindexRun.id == run).values(beat_at=datetime.now(UTC) - timedelta(minutes=5))
        )
        await session.commit()
        assert not await reindex_running(session, "new", chat_id=5)  # killed: its heartbeat went stale


async def test_reindex_makes_photos_of_a_retired_clip_searchable(
    start_bot, telegram, understood, world_dir, tmp_path, monkeypatch, capsys
) -> None:
    from bot.ops.cli import main

    app = await start_bot()
    services = app.bot_data.services
    alice, bob = private(41), private(42)
    good, gone, slow, bobs = understood[:4]
    file_ids = {}
    for chat, held, replies in ((alice, good, 1), (alice, gone, 2), (alice, slow, 3), (bob, bobs, 1)):
        message = send_photo(telegram, chat, user(chat["id"]), held.image)
        file_ids[held.path] = message["photo"][-1]["file_id"]
        await telegram.wait_replies(chat["id"], replies)

    async def stored() -> dict[int, tuple[str, bool]]:
        async with services.sessions() as session:
            rows = await session.execute(select(ImageRecord.id, ImageRecord.embedding_model, ImageRecord.file_gone))
            return {row.id: (row.embedding_model, row.file_gone) for row in rows}

    async def all_stored() -> bool:  # a photo is stored just after its reply goes out
        return len(await stored()) == 4

    await eventually(all_stored, what="the four photos stored")
    async with services.sessions() as session:  # the operator changes CLIP: every stored vector is of the old one
        captions = dict((await session.execute(select(ImageRecord.id, ImageRecord.caption))).all())
        await session.execute(update(ImageRecord).values(embedding_model=RETIRED))
        await session.commit()

    async def search(chat: dict, phrase: str, replies: int) -> str:
        send_text(telegram, chat, user(chat["id"]), f"/search {phrase}")
        return (await telegram.wait_replies(chat["id"], replies))[-1].text

    assert "can't search this chat's 3 earlier photos yet" in await search(alice, good.scene.caption, 4)

    del telegram.files[file_ids[gone.path]]  # Telegram no longer has it
    telegram.download_status[file_ids[slow.path]] = "hang"  # downloads that never end: the run's deadline ends them
    telegram.download_status[file_ids[bobs.path]] = "hang"
    for name, value in (
        ("TELEGRAM_BOT_TOKEN", BOT_TOKEN),
        ("CLIPCHAT_BASE_URL", telegram.base_url),
        ("CLIPCHAT_BASE_FILE_URL", telegram.base_file_url),
        ("CLIPCHAT_MODELS", str(world_dir)),
        ("CLIPCHAT_DEVICE", "cpu"),
        ("CLIPCHAT_DOWNLOAD_TIMEOUT_S", "3"),
    ):
        monkeypatch.setenv(name, value)
    argv = ["db", "reindex", "--rate", "50", "--url", f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}"]
    run = asyncio.create_task(asyncio.to_thread(main, argv))
    identity = services.models.identity

    async def good_done_and_gone_marked() -> bool:
        rows = (await stored()).values()
        return sum(model == identity for model, _ in rows) == 1 and sum(gone_ for _, gone_ in rows) == 1

    await eventually(good_done_and_gone_marked, what="the good photo re-embedded, the gone one marked", timeout=20)
    # While the hanging downloads hold the run: what is re-embedded is found at once, the rest is waited for
    send_text(telegram, alice, user(41), f"/search {good.scene.caption}")
    [hit] = await telegram.wait_for(lambda: telegram.sent("sendPhoto", 41), what="the re-embedded photo")
    assert hit.params["photo"] == file_ids[good.path]
    note = (await telegram.wait_replies(41, 6))[-1].text
    assert "re-indexed so far; 1 earlier photo is still to come" in note
    during = await search(bob, bobs.scene.caption, 2)
    assert "I'm re-indexing this chat's earlier photos" in during and "(1 still to go)" in during
    assert not run.done(), "the run ended before /search was answered: the hanging downloads should hold it"

    assert await asyncio.wait_for(run, 30) == 1  # failures: the exit status says to run it again
    shown = printed(capsys)
    assert "1 re-embedded, 1 gone from Telegram, 2 failed" in shown and "re-indexing: 100%" in shown
    assert "can't search this chat's 1 earlier photo yet" in await search(bob, bobs.scene.caption, 3)  # run over
    send_text(telegram, alice, user(41), f"/search {good.scene.caption}")  # found, one left, and nobody re-indexing
    note = (await telegram.wait_replies(41, 8))[-1].text
    assert "1 earlier photo is searchable again once the bot's operator re-indexes" in note, note

    telegram.download_status.clear()
    asked = len(telegram.sent("getFile"))
    assert await asyncio.wait_for(asyncio.to_thread(main, argv), 30) == 0
    assert "2 re-embedded, 0 gone from Telegram, 0 failed" in printed(capsys)
    retried = {call.params["file_id"] for call in telegram.sent("getFile")[asked:]}
    assert retried == {file_ids[slow.path], file_ids[bobs.path]}  # neither the done nor the gone photo again
    send_text(telegram, bob, user(42), f"/search {bobs.scene.caption}")
    [bob_hit] = await telegram.wait_for(lambda: telegram.sent("sendPhoto", 42), what="bob's photo")
    assert bob_hit.params["photo"] == file_ids[bobs.path]

    asked = len(telegram.sent("getFile"))
    assert await asyncio.wait_for(asyncio.to_thread(main, argv), 30) == 0
    assert "Nothing to re-index" in printed(capsys)
    assert len(telegram.sent("getFile")) == asked
    rows = (await stored()).values()
    assert sum(model == identity for model, _ in rows) == 3 and sum(gone_ for _, gone_ in rows) == 1
    async with services.sessions() as session:  # captions stay as first seen
        assert dict((await session.execute(select(ImageRecord.id, ImageRecord.caption))).all()) == captions


def printed(capsys) -> str:
    """What the command printed: the summary (stdout), the progress bar and warnings (stderr); never the token."""
    out, err = capsys.readouterr()
    assert BOT_TOKEN not in out + err
    return out + err


async def test_another_bots_token_stops_the_run_before_marking_anything_gone(
    start_bot, telegram, understood, world_dir, tmp_path, monkeypatch, capsys
) -> None:
    """File ids belong to the bot that received them: with another bot's token every photo looks gone, and
    marking them so would hide them for good."""
    from bot.ops.cli import main
    from bot.ops.reindex import GONE_BEFORE_ANY

    app = await start_bot()
    services = app.bot_data.services
    alice = private(43)
    for count, held in enumerate(understood[: GONE_BEFORE_ANY + 1], start=1):
        send_photo(telegram, alice, user(43), held.image)
        await telegram.wait_replies(43, count)

    async def rows() -> list:
        async with services.sessions() as session:
            return (await session.execute(select(ImageRecord.embedding_model, ImageRecord.file_gone))).all()

    async def all_stored() -> bool:
        return len(await rows()) == GONE_BEFORE_ANY + 1

    await eventually(all_stored, what="the photos stored")
    async with services.sessions() as session:
        await session.execute(update(ImageRecord).values(embedding_model=RETIRED))
        await session.commit()
    telegram.files.clear()  # to this server's bot, every file id is unknown, as to another bot
    for name, value in (
        ("TELEGRAM_BOT_TOKEN", BOT_TOKEN),
        ("CLIPCHAT_BASE_URL", telegram.base_url),
        ("CLIPCHAT_BASE_FILE_URL", telegram.base_file_url),
        ("CLIPCHAT_MODELS", str(world_dir)),
        ("CLIPCHAT_DEVICE", "cpu"),
    ):
        monkeypatch.setenv(name, value)
    argv = ["db", "reindex", "--rate", "50", "--url", f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}"]
    assert await asyncio.wait_for(asyncio.to_thread(main, argv), 30) == 2
    assert f"Telegram knew none of the first {GONE_BEFORE_ANY} photos" in printed(capsys)
    assert all(model == RETIRED and not gone for model, gone in await rows())  # still waiting, none hidden


async def test_a_file_telegram_cannot_serve_for_now_is_retried_not_marked_gone(telegram) -> None:
    """getFile's "file is temporarily unavailable" is a BadRequest, as "wrong file identifier" is: the run took
    it for a file that is gone, and marked it so, never to be asked for again."""
    import pytest
    from telegram.error import BadRequest
    from telegram.ext import ExtBot

    from bot.ops.reindex import Gone, _fetch

    file_id, _, _ = telegram.add_file(b"\xff\xd8 a photo")
    async with ExtBot(BOT_TOKEN, base_url=telegram.base_url, base_file_url=telegram.base_file_url) as bot:
        telegram.fail("getFile", code=400, description="Bad Request: file is temporarily unavailable")
        with pytest.raises(BadRequest, match="temporarily unavailable"):
            await _fetch(bot, file_id, 5.0, 2**20)
        telegram.fail("getFile", code=400, description="Bad Request: wrong file identifier")
        with pytest.raises(Gone):
            await _fetch(bot, file_id, 5.0, 2**20)


async def test_a_file_too_big_for_the_bot_api_is_no_failure(telegram, world_dir) -> None:
    """A photo over the Bot API's 20 MB (or the bot's own limit) can never be fetched: it was counted as failed
    on every run, each one ending with "run it again to retry the failed ones" and exit status 1."""
    from telegram.ext import ExtBot

    from bot.ops.reindex import Embedder, Tally, _reembed
    from vision.catalog.settings import VisionSettings

    settings = VisionSettings(models=str(world_dir), device="cpu", max_image_bytes=1024)
    embedder = await Embedder.load(settings, 60.0)
    try:
        huge, _, _ = telegram.add_file(bytes(1025))  # over CLIPCHAT_MAX_IMAGE_BYTES, as getFile says
        big = telegram.add_file(b"\xff\xd8 another")[0]
        telegram.fail("getFile", code=400, description="Bad Request: file is too big")
        tally = Tally()
        async with ExtBot(BOT_TOKEN, base_url=telegram.base_url, base_file_url=telegram.base_file_url) as bot:
            for number, file_id in enumerate((big, huge)):  # refused by getFile, then by the declared size
                await _reembed(bot, None, embedder, Waiting(number, 1, file_id, RETIRED), 5.0, tally)
    finally:
        embedder.close()
    assert (tally.failed, tally.too_big) == (0, 2)
    assert "2 too big to fetch" in tally.summary("clip") and "again" not in tally.summary("clip")
