"""How long /forget takes in a large group, at two schema revisions (migration 0011 added the indexes).

    python -m bench.forgetting 0010 0011

A SQLite database per revision: one group of 4,000 people, 40,000 photos and 200,000 turns; then 400 of them
are forgotten one by one through `storage.lifecycle.forget_user`, as /forget does.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import text

from storage import connect_database, make_sessionmaker, upgrade
from storage.lifecycle import forget_user

PEOPLE, PHOTOS, TURNS, FORGOTTEN = 4_000, 40_000, 200_000, 400
GROUP = -100


async def fill(engine) -> None:
    now = datetime.now(UTC).isoformat()
    async with engine.begin() as connection:
        await connection.execute(
            text("INSERT INTO chats (id, kind, first_seen) VALUES (:id, 'group', :now)"), {"id": GROUP, "now": now}
        )
        await connection.execute(
            text("INSERT INTO users (id, first_seen) VALUES (:id, :now)"),
            [{"id": person, "now": now} for person in range(1, PEOPLE + 1)],
        )
        await connection.execute(
            text(
                "INSERT INTO images (id, chat_id, sender_id, message_id, file_id, file_unique_id, caption, tags,"
                " embedding, embedding_model, created_at, media_kind, file_gone, spoiler)"
                " VALUES (:id, :chat, :sender, :id, 'f', 'u', 'c', '[]', x'00', 'clip', :now, 'photo', 0, 0)"
            ),
            [{"id": i, "chat": GROUP, "sender": 1 + i % PEOPLE, "now": now} for i in range(1, PHOTOS + 1)],
        )
        await connection.execute(
            text(
                "INSERT INTO turns (chat_id, user_id, role, text, image_id, created_at)"
                " VALUES (:chat, :user, 'user', 'what is it?', :image, :now)"
            ),
            [{"chat": GROUP, "user": 1 + t % PEOPLE, "image": 1 + t % PHOTOS, "now": now} for t in range(TURNS)],
        )


async def seconds_to_forget(revision: str) -> float:
    with tempfile.TemporaryDirectory() as folder:
        engine = connect_database(f"sqlite+aiosqlite:///{Path(folder) / 'bench.db'}")
        try:
            await upgrade(engine, revision)
            await fill(engine)
            sessions = make_sessionmaker(engine)
            started = time.perf_counter()
            for person in range(1, FORGOTTEN + 1):
                async with sessions() as session:
                    await forget_user(session, person)
                    await session.commit()
            return time.perf_counter() - started
        finally:
            await engine.dispose()


async def main(revisions: list[str]) -> None:
    for revision in revisions:
        print(f"schema {revision}: {FORGOTTEN} /forgets in {await seconds_to_forget(revision):.2f} s")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:] or ["head"]))
