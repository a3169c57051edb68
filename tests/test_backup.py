"""`clipchat db backup` and `clipchat db restore`, end to end: the bot still knows a photo and a conversation
after its database is backed up, wiped and restored."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import stat
from pathlib import Path

import pytest

from storage import Turn
from tests.bot_helpers import eventually, send_photo, send_text
from tests.conftest import fresh_postgres
from tests.fake_telegram import private, user
from tests.test_bot import caption_of, stored


async def in_session(url: str, work):
    """`work(session)` in one committed session of its own, on a fresh engine (restores replace the database
    under any engine kept open)."""
    from storage import connect_database, make_sessionmaker

    engine = connect_database(url)
    try:
        async with make_sessionmaker(engine)() as session:
            result = await work(session)
            await session.commit()
            return result
    finally:
        await engine.dispose()


async def clipchat(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    """The `clipchat` command line in this process, as an operator types it (on a thread: it runs its own loop)."""
    from bot.ops.cli import main

    capsys.readouterr()
    code = await asyncio.to_thread(main, list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@contextlib.asynccontextmanager
async def database(kind: str, tmp_path: Path):
    """The bot's database URL, and how to wipe that database as a lost disk would."""
    if kind == "sqlite":
        file = tmp_path / "bot.db"

        async def wipe() -> None:
            for path in (file, Path(f"{file}-wal"), Path(f"{file}-shm")):
                path.unlink(missing_ok=True)

        yield f"sqlite+aiosqlite:///{file}", wipe
        return
    if shutil.which("pg_dump") is None or shutil.which("pg_restore") is None:
        pytest.skip("pg_dump and pg_restore are not installed (apt install postgresql-client, the server's version)")
    async with fresh_postgres() as url:
        from storage import connect_database

        async def wipe() -> None:
            engine = connect_database(url.render_as_string(hide_password=False))
            try:
                async with engine.begin() as connection:
                    await connection.exec_driver_sql("DROP SCHEMA public CASCADE")
                    await connection.exec_driver_sql("CREATE SCHEMA public")
            finally:
                await engine.dispose()

        yield url.render_as_string(hide_password=False), wipe


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
async def test_a_restored_backup_brings_back_the_photo_and_the_conversation(
    kind, start_bot, telegram, world_models, understood, tmp_path, capsys
):
    held, chat, alice = understood[0], private(1), user(1)
    backup = tmp_path / "backups" / ("clipchat.db" if kind == "sqlite" else "clipchat.dump")
    async with database(kind, tmp_path) as (url, wipe):
        app = await start_bot(database_url=url)
        send_photo(telegram, chat, alice, held.image)
        await telegram.wait_replies(1, 1)
        send_text(telegram, chat, alice, f"what colour is the {held.scene.shape}?")
        assert held.scene.colour in (await telegram.wait_replies(1, 2))[-1].text
        await eventually(lambda: stored(app, Turn.chat_id == 1, 4), what="the photo's and the question's turns")
        if kind == "sqlite":  # the newest writes are still in the WAL: the online backup must take them too
            assert Path(f"{tmp_path / 'bot.db'}-wal").stat().st_size > 0
        code, out, err = await clipchat(capsys, "db", "backup", str(backup), "--url", url)  # while the bot runs
        assert code == 0, err
        assert f"to {backup}" in out and backup.is_file()
        await start_bot.stop(app)

        await wipe()
        code, out, err = await clipchat(capsys, "db", "restore", str(backup), "--url", url)
        assert code == 0, err
        assert "Restored" in out
        code, _, err = await clipchat(capsys, "db", "restore", str(backup), "--url", url)  # it holds rows now
        assert code == 2 and err.count("\n") == 1 and "--force" in err and "already holds data" in err

        app = await start_bot(database_url=url)
        assert await stored(app, Turn.chat_id == 1, 4)  # the conversation so far
        send_text(telegram, chat, alice, "/caption")
        assert caption_of(world_models, held.image).lower() in (await telegram.wait_replies(1, 3))[-1].text.lower()
        send_text(telegram, chat, alice, "what colour is it?")
        assert held.scene.colour in (await telegram.wait_replies(1, 4))[-1].text
        await start_bot.stop(app)


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
async def test_a_backup_is_readable_by_its_owner_only_whatever_the_umask(kind, tmp_path, capsys) -> None:
    """Backups hold every stored conversation: a file 0644 in a directory 0755 gave them to every local user."""
    backups = tmp_path / "backups"
    target = backups / "daily" / "clipchat.db"
    before = os.umask(0o022)  # the usual umask: files 0644, directories 0755
    try:
        async with database(kind, tmp_path) as (url, _wipe):
            for argv in (["upgrade"], ["backup", str(target)], ["backup", str(target)]):  # the second replaces
                code, _, err = await clipchat(capsys, "db", *argv, "--url", url)
                assert code == 0, err
    finally:
        os.umask(before)
    mode = {path: stat.S_IMODE(path.stat().st_mode) for path in (target, target.parent, backups)}
    assert mode == {target: 0o600, target.parent: 0o700, backups: 0o700}, {p: oct(m) for p, m in mode.items()}
    assert [path.name for path in target.parent.iterdir()] == ["clipchat.db"]  # no .partial left behind


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
async def test_restoring_a_backup_does_not_undo_forget(kind, tmp_path, capsys) -> None:
    """A backup taken before someone's /forget brought their photos and conversations back on restore.
    Now each restore forgets them again, whichever backup it restores, and keeps the list of /forgets the
    replaced database held; what they sent after coming back stays."""
    from storage import (
        ImageRecord,
        add_turn,
        forget_count,
        forget_user,
        rows_about_user,
        save_image,
    )
    from tests.test_storage import photo

    carol, dan, group = 7_000_000_001, 7_000_000_002, -100777
    before_forget, after_return = tmp_path / "before.backup", tmp_path / "after.backup"

    async def write_rows(session, who: int, message_id: int) -> None:
        mine = await save_image(session, photo(who, who, message_id))
        await add_turn(session, who, who, "user", f"a secret {message_id}", image_id=mine.id)
        await save_image(session, photo(group, who, message_id + 1), chat_kind="group")

    async def about(session, who: int) -> dict[str, int]:
        return {name: count for name, count in (await rows_about_user(session, who)).items() if count}

    async def messages(session, who: int) -> list[str]:
        return sorted((await session.scalars(select(ImageRecord.caption).where(ImageRecord.sender_id == who))).all())

    async def restore(path: Path) -> str:
        code, out, err = await clipchat(capsys, "db", "restore", str(path), "--url", url, "--force")
        assert code == 0, err
        return out

    from sqlalchemy import select

    async with database(kind, tmp_path) as (url, _wipe):
        code, _, err = await clipchat(capsys, "db", "upgrade", "--url", url)
        assert code == 0, err
        await in_session(url, lambda session: write_rows(session, carol, 10))
        await in_session(url, lambda session: write_rows(session, dan, 20))
        code, _, err = await clipchat(capsys, "db", "backup", str(before_forget), "--url", url)
        assert code == 0, err
        await in_session(url, lambda session: forget_user(session, carol))
        await in_session(url, lambda session: write_rows(session, carol, 30))  # she comes back and sends another photo
        code, _, err = await clipchat(capsys, "db", "backup", str(after_return), "--url", url)
        assert code == 0, err

        out = await restore(before_forget)  # taken before her /forget, which the backup knows nothing of
        assert not Path(f"{before_forget}.forgotten.json").exists()  # the list saved meanwhile is gone
        assert await in_session(url, lambda session: about(session, carol)) == {}  # none of her photos or messages back
        assert "1 /forget requests on record applied again: 2 photos and 1 messages" in out, out
        assert await in_session(url, lambda session: messages(session, dan)) == ["photo 20", "photo 21"]  # his are
        assert await in_session(url, forget_count) == 1  # the list of /forgets survives the restore

        await in_session(url, lambda session: forget_user(session, dan))
        await restore(after_return)  # knows of her /forget, not of his
        assert await in_session(url, lambda session: messages(session, carol)) == ["photo 30", "photo 31"]  # sent after
        assert await in_session(url, lambda session: about(session, dan)) == {}
        assert await in_session(url, forget_count) == 2


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
async def test_a_backup_older_than_the_forgetting_table_restores_and_keeps_the_list(kind, tmp_path, capsys) -> None:
    """A backup from before migration 0009 has no list of /forgets: the restore brings it to this schema
    and keeps the list the replaced database held. (PostgreSQL's `pg_restore --clean` left the newer
    tables standing, and the migrations then failed to make them again.)"""
    from storage import forget_count, forget_user

    old = tmp_path / "old.backup"

    async with database(kind, tmp_path) as (url, _wipe):
        for argv in (["upgrade", "--revision", "0007"], ["backup", str(old)], ["upgrade"]):
            code, _, err = await clipchat(capsys, "db", *argv, "--url", url)
            assert code == 0, err
        await in_session(url, lambda session: forget_user(session, 7_000_000_003))
        code, out, err = await clipchat(capsys, "db", "restore", str(old), "--url", url, "--force")
        assert code == 0, err
        assert "1 /forget requests on record applied again" in out, out
        assert await in_session(url, forget_count) == 1
        code, out, err = await clipchat(capsys, "db", "upgrade", "--url", url)  # as the bot does at start-up
        assert code == 0, err


async def test_a_restore_that_psql_stops_says_why_not_that_a_pipe_broke(tmp_path, capsys) -> None:
    """When psql stops on an error, pg_restore, still writing, dies of the closed pipe: the restore said
    "pg_restore failed" and nothing of why. It now says psql's error."""
    from storage import connect_database

    backup = tmp_path / "big.backup"
    async with database("postgresql", tmp_path) as (url, _wipe):

        async def sql(statement: str) -> None:
            engine = connect_database(url)
            try:
                async with engine.begin() as connection:
                    await connection.exec_driver_sql(statement)
            finally:
                await engine.dispose()

        # 2 MB of SQL after the restore's first statements: more than a pipe holds
        await sql("CREATE TABLE filler AS SELECT repeat('x', 2000) AS t FROM generate_series(1, 1000)")
        code, _, err = await clipchat(capsys, "db", "backup", str(backup), "--url", url)
        assert code == 0, err
        await sql("CREATE VIEW seen AS SELECT * FROM filler")  # the restore's DROP TABLE filler stops on it
        code, _, err = await clipchat(capsys, "db", "restore", str(backup), "--url", url, "--force")
        assert code == 2 and err.count("\n") == 1, err
        assert "cannot drop table" in err and "other objects depend on it" in err, err


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
async def test_a_restore_whose_second_step_fails_keeps_the_forgets_to_apply_again(kind, tmp_path, capsys) -> None:
    """PostgreSQL restores in one transaction and forgets again in the next. When the second failed (here a
    migration), the /forgets since the backup had been read into memory only: the people they forgot were
    back, and restoring again could not forget them. The list now waits in a private file beside the
    backup, and the command the restore prints applies it. SQLite does both steps on a copy: its database
    stays as it was."""
    import shlex

    from storage import add_turn, connect_database, downgrade, forget_count, forget_user, save_image
    from tests.test_storage import photo

    carol = 7_000_000_004
    old = tmp_path / "old.backup"
    saved = tmp_path / "old.backup.forgotten.json"

    async def sql(statement: str):
        engine = connect_database(url)
        try:
            async with engine.begin() as connection:
                result = await connection.exec_driver_sql(statement)
                return result.scalar() if result.returns_rows else None
        finally:
            await engine.dispose()

    async def write_rows(session) -> None:
        mine = await save_image(session, photo(carol, carol, 10))
        await add_turn(session, carol, carol, "user", "a secret", image_id=mine.id)

    async def hers() -> int:
        return await sql(f"SELECT count(*) FROM images WHERE sender_id = {carol}") + await sql(
            f"SELECT count(*) FROM turns WHERE user_id = {carol}"
        )

    # made by hand, under the name of an index migration 0010 makes: the migration fails on it
    stray = "ix_sent_photos_chat_message"
    async with database(kind, tmp_path) as (url, _wipe):
        code, _, err = await clipchat(capsys, "db", "upgrade", "--url", url)
        assert code == 0, err
        await in_session(url, write_rows)
        engine = connect_database(url)
        try:
            await downgrade(engine, "0009")
        finally:
            await engine.dispose()
        await sql(f"CREATE INDEX {stray} ON images (chat_id)")
        code, _, err = await clipchat(capsys, "db", "backup", str(old), "--url", url)
        assert code == 0, err
        await sql(f"DROP INDEX {stray}")
        code, _, err = await clipchat(capsys, "db", "upgrade", "--url", url)
        assert code == 0, err
        await in_session(url, lambda session: forget_user(session, carol))
        assert await hers() == 0

        code, _, err = await clipchat(capsys, "db", "restore", str(old), "--url", url, "--force")
        assert code == 2 and err.count("\n") == 1 and stray in err, err
        if kind == "sqlite":
            assert "was not changed" in err and not saved.exists(), err
            assert await hers() == 0 and await in_session(url, forget_count) == 1
            return
        assert await hers() == 2  # restored, not yet forgotten again
        assert stat.S_IMODE(saved.stat().st_mode) == 0o600
        assert f"saved in {saved}" in err, err
        command = shlex.split(err.split(" run ", 1)[1])
        assert command[:4] == ["clipchat", "db", "forget-again", str(saved)], command

        await sql(f"DROP INDEX {stray}")  # the operator fixes what failed, then runs what the restore said
        for _ in range(2):  # and may run it again
            code, out, err = await clipchat(capsys, *command[1:])
            assert code == 0, err
            assert "Applied the 1 /forget requests" in out, out
        assert await hers() == 0 and await in_session(url, forget_count) == 1


async def test_a_restore_over_a_damaged_sqlite_file_says_so_and_goes_on_when_told(tmp_path, capsys) -> None:
    """A damaged database is the usual reason to restore, and reading its list of /forgets stopped the
    restore with a traceback. It now says so in one line, and --without-forgotten-list restores over it."""
    good, live = tmp_path / "good.backup", tmp_path / "bot.db"
    url = f"sqlite+aiosqlite:///{live}"
    for argv in (["upgrade"], ["backup", str(good)]):
        code, _, err = await clipchat(capsys, "db", *argv, "--url", url)
        assert code == 0, err
    live.write_bytes(b"not a database " * 1000)
    for force in ([], ["--force"]):
        code, _, err = await clipchat(capsys, "db", "restore", str(good), "--url", url, *force)
        assert code == 2 and err.count("\n") == 1, err
        assert "cannot be read (file is not a database)" in err and "--force --without-forgotten-list" in err, err
    code, out, err = await clipchat(
        capsys, "db", "restore", str(good), "--url", url, "--force", "--without-forgotten-list"
    )
    assert code == 0, err
    assert "Restored" in out
    code, _, err = await clipchat(capsys, "db", "upgrade", "--url", url)  # as the bot does at start-up
    assert code == 0, err
