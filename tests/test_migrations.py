"""Migrations with rows in the tables: stop before each one, fill the tables, migrate up and down, nothing lost.

Runs on SQLite and PostgreSQL (the `database_url` fixture), like the rest of the storage tests.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

import numpy as np
import pytest
from sqlalchemy import text

from storage import connect_database, downgrade, upgrade
from storage.models import encode_embedding

NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
ALICE, BOB, GROUP = 1001, 1002, -100500
VECTOR = encode_embedding(np.full(8, 1 / np.sqrt(8)))

# What a busy bot holds at revision 0001: two people, a private chat and a group, settings, photos and turns.
AT_0001 = {
    "users": [{"id": ALICE, "first_seen": NOW}, {"id": BOB, "first_seen": NOW}],
    "chats": [
        {"id": ALICE, "kind": "private", "first_seen": NOW},
        {"id": GROUP, "kind": "supergroup", "first_seen": NOW},
    ],
    "chat_settings": [{"chat_id": GROUP, "auto_caption": True, "alt_text": False, "updated_by": ALICE}],
    "user_settings": [{"user_id": BOB, "preferences": '{"language": "de"}'}],
    "images": [
        {
            "id": 1,
            "chat_id": ALICE,
            "sender_id": ALICE,
            "message_id": 10,
            "media_group_id": None,
            "file_id": "AgAD-photo-1",
            "file_unique_id": "u1",
            "caption": "a red circle on grass",
            "tags": '[{"label": "red", "score": 0.9}]',
            "embedding": VECTOR,
            "embedding_model": "clip-a",
            "created_at": NOW,
        },
        {
            "id": 2,
            "chat_id": GROUP,
            "sender_id": BOB,
            "message_id": 11,
            "media_group_id": "album-7",
            "file_id": "AgAD-photo-2",
            "file_unique_id": "u2",
            "caption": "a blue square",
            "tags": "[]",
            "embedding": VECTOR,
            "embedding_model": "clip-a",
            "created_at": NOW,
        },
    ],
    "turns": [
        {
            "id": 1,
            "chat_id": ALICE,
            "user_id": ALICE,
            "role": "user",
            "text": "[photo]",
            "image_id": 1,
            "created_at": NOW,
        },
        {
            "id": 2,
            "chat_id": ALICE,
            "user_id": ALICE,
            "role": "assistant",
            "text": "A red circle.",
            "image_id": 1,
            "created_at": NOW,
        },
        {
            "id": 3,
            "chat_id": GROUP,
            "user_id": BOB,
            "role": "user",
            "text": "what colour?",
            "image_id": 2,
            "created_at": NOW,
        },
    ],
}
# Rows that only the later revisions can hold.
AT_0002 = {
    "images": [
        {
            "id": 3,
            "chat_id": GROUP,
            "sender_id": ALICE,
            "message_id": 12,
            "media_group_id": None,
            "file_id": "BQAD-doc-3",
            "file_unique_id": "u3",
            "caption": "a green triangle",
            "tags": "[]",
            "embedding": VECTOR,
            "embedding_model": "clip-a",
            "created_at": NOW,
            "media_kind": "document",
        }
    ],
    "turns": [
        {
            "id": 4,
            "chat_id": GROUP,
            "user_id": ALICE,
            "role": "assistant",
            "text": "It's green.",
            "image_id": 3,
            "created_at": NOW,
            "message_id": 99,
        }
    ],
}
AT_0003 = {"pending_updates": [{"user_key": ALICE, "update_id": 5000, "arrived_at": NOW}]}
AT_0005 = {
    "images": [
        {
            "id": 4,
            "chat_id": ALICE,
            "sender_id": ALICE,
            "message_id": 13,
            "media_group_id": None,
            "file_id": "AgAD-gone-4",
            "file_unique_id": "u4",
            "caption": "a grey star",
            "tags": "[]",
            "embedding": VECTOR,
            "embedding_model": "clip-a",
            "created_at": NOW,
            "media_kind": "photo",
            "file_gone": True,
        }
    ],
    "reindex_runs": [{"id": 1, "embedding_model": "clip-b", "chat_id": GROUP, "started_at": NOW, "beat_at": NOW}],
}
AT_0006 = {
    "chat_settings": [
        {
            "chat_id": ALICE,
            "auto_caption": False,
            "alt_text": False,
            "updated_by": ALICE,
            "index_photos": False,
            "language": "es",
            "daily_photos": 5,
            "daily_questions": None,
        }
    ],
    "user_access": [{"user_id": BOB, "status": "banned", "updated_by": ALICE, "updated_at": NOW}],
    "usage": [{"scope": "user", "subject_id": ALICE, "day": NOW.date(), "kind": "photos", "count": 3, "told": True}],
}
AT_0008 = {
    "images": [
        {
            "id": 5,
            "chat_id": GROUP,
            "sender_id": BOB,
            "message_id": 14,
            "media_group_id": None,
            "file_id": "AgAD-spoiler-5",
            "file_unique_id": "u5",
            "caption": "a black heart",
            "tags": "[]",
            "embedding": VECTOR,
            "embedding_model": "clip-a",
            "created_at": NOW,
            "media_kind": "photo",
            "file_gone": False,
            "spoiler": True,
        }
    ],
    "chat_members": [
        {"chat_id": GROUP, "user_id": ALICE, "first_seen": NOW},
        {"chat_id": GROUP, "user_id": BOB, "first_seen": NOW},
    ],
}
AT_0009 = {"forgotten": [{"user_id": 1003, "forgotten_at": NOW}, {"user_id": GROUP, "forgotten_at": NOW}]}
AT_0010 = {
    "sent_photos": [
        {"id": 1, "chat_id": GROUP, "message_id": 120, "image_id": 2, "sent_at": NOW},
        {"id": 2, "chat_id": ALICE, "message_id": 121, "image_id": 1, "sent_at": NOW},
    ]
}
# A forum: Bob's photo and question in topic 11 (the turn's message id is the bot's answer, there too).
AT_0012 = {
    "images": [
        {
            "id": 6,
            "chat_id": GROUP,
            "sender_id": BOB,
            "message_id": 15,
            "media_group_id": None,
            "file_id": "AgAD-topic-6",
            "file_unique_id": "u6",
            "caption": "a white moon",
            "tags": "[]",
            "embedding": VECTOR,
            "embedding_model": "clip-a",
            "created_at": NOW,
            "media_kind": "photo",
            "file_gone": False,
            "spoiler": False,
            "topic_id": 11,
        }
    ],
    "turns": [
        {
            "id": 5,
            "chat_id": GROUP,
            "user_id": BOB,
            "role": "user",
            "text": "what colour is it?",
            "image_id": 6,
            "created_at": NOW,
            "message_id": None,
            "topic_id": 11,
        },
        {
            "id": 6,
            "chat_id": GROUP,
            "user_id": BOB,
            "role": "assistant",
            "text": "It's white.",
            "image_id": 6,
            "created_at": NOW,
            "message_id": 16,
            "topic_id": 11,
        },
    ],
}
ROWS = {
    "0001": AT_0001,
    "0002": AT_0002,
    "0003": AT_0003,
    "0004": {},
    "0005": AT_0005,
    "0006": AT_0006,
    "0007": {},
    "0008": AT_0008,
    "0009": AT_0009,
    "0010": AT_0010,
    "0011": {},  # indexes only
    "0012": AT_0012,
}
REVISIONS = ["0001", "0002", "0003", "0004", "0005", "0006", "0007", "0008", "0009", "0010", "0011", "0012"]
DROPS = {"0007": {"user_settings"}}  # tables a revision drops, rows and all
MIGRATIONS = list(zip(["base", *REVISIONS], REVISIONS))  # (stop before, migrate to)
KEYS = {
    "users": "id",
    "chats": "id",
    "chat_settings": "chat_id",
    "user_settings": "user_id",
    "images": "id",
    "turns": "id",
    "pending_updates": "update_id",
    "reindex_runs": "id",
    "user_access": "user_id",
    "usage": "subject_id",
    "chat_members": "user_id",
    "forgotten": "user_id",
    "sent_photos": "id",
}


async def insert(engine, rows: dict[str, list[dict]]) -> None:
    async with engine.begin() as connection:
        for table, records in rows.items():
            for record in records:
                columns = ", ".join(record)
                values = ", ".join(f":{name}" for name in record)
                await connection.execute(text(f"INSERT INTO {table} ({columns}) VALUES ({values})"), record)


async def table_rows(engine, table: str) -> list[dict]:
    async with engine.connect() as connection:
        result = await connection.execute(text(f"SELECT * FROM {table} ORDER BY {KEYS[table]}"))
        return [dict(row._mapping) for row in result]


async def tables(engine) -> set[str]:
    from sqlalchemy import inspect

    async with engine.connect() as connection:
        return set(await connection.run_sync(lambda sync: inspect(sync).get_table_names())) - {"alembic_version"}


def same(stored: dict, written: dict) -> bool:
    """The row as written, whatever each database hands back for JSON, booleans and times."""
    import json

    for name, value in written.items():
        got = stored[name]
        if isinstance(value, datetime):
            got = datetime.fromisoformat(got) if isinstance(got, str) else got  # SQLite keeps text
            got = got if got.tzinfo else got.replace(tzinfo=UTC)
        elif isinstance(value, date):
            got = date.fromisoformat(got) if isinstance(got, str) else got
        elif name in ("tags", "preferences"):
            got, value = (json.loads(got) if isinstance(got, str) else got), json.loads(value)
        elif isinstance(value, bool):
            got = bool(got)
        if got != value:
            return False
    return True


async def assert_kept(engine, written: list[dict[str, list[dict]]], dropped: set[str] = frozenset()) -> None:
    """Every row written is there as written, but for those of the `dropped` tables."""
    for rows in written:
        for table, records in rows.items():
            if table in dropped:
                continue
            stored = {row[KEYS[table]]: row for row in await table_rows(engine, table)}
            for record in records:
                assert same(stored[record[KEYS[table]]], record), (table, stored[record[KEYS[table]]], record)


@pytest.mark.parametrize(("before", "target"), MIGRATIONS, ids=[target for _, target in MIGRATIONS])
async def test_each_migration_keeps_the_rows_it_finds(database_url: str, before: str, target: str) -> None:
    engine = connect_database(database_url)
    try:
        written = []
        if before != "base":
            await upgrade(engine, before)
            done = REVISIONS[: REVISIONS.index(before) + 1]
            gone = set().union(*(DROPS.get(revision, set()) for revision in done))  # dropped on the way
            for revision in done:  # what each revision up to `before` holds, in the tables still there
                rows = {table: records for table, records in ROWS[revision].items() if table not in gone}
                await insert(engine, rows)
                written.append(rows)
        await upgrade(engine, target)
        dropped = DROPS.get(target, set())
        await assert_kept(engine, written, dropped)
        assert not dropped & await tables(engine)
        await insert(engine, ROWS[target])  # the new schema takes the rows it was made for
        await assert_kept(engine, [*written, ROWS[target]], dropped)
        if target == "0002":  # photos stored before the column existed were sent as photos
            assert {row["id"]: row["media_kind"] for row in await table_rows(engine, "images")} == {
                1: "photo",
                2: "photo",
                3: "document",
            }
        if target == "0006":  # groups keep indexing unaddressed photos, as they did before they could choose
            assert {row["chat_id"]: bool(row["index_photos"]) for row in await table_rows(engine, "chat_settings")} == {
                GROUP: True,
                ALICE: False,
            }
        if target == "0008":  # photos stored before were not marked as spoilers
            assert {row["id"]: bool(row["spoiler"]) for row in await table_rows(engine, "images")} == {
                1: False,
                2: False,
                3: False,
                4: False,
                5: True,
            }
        if target == "0012":  # photos and turns stored before were in no topic, as every chat without topics is
            for table, topics in (
                ("images", {1: 0, 2: 0, 3: 0, 4: 0, 5: 0, 6: 11}),
                ("turns", {1: 0, 2: 0, 3: 0, 4: 0, 5: 11, 6: 11}),
            ):
                assert {row["id"]: row["topic_id"] for row in await table_rows(engine, table)} == topics
        if target == "0005":  # photos stored before were never found gone
            assert {row["id"]: bool(row["file_gone"]) for row in await table_rows(engine, "images")} == {
                1: False,
                2: False,
                3: False,
                4: True,
            }
        await downgrade(engine, before)
        await assert_kept(engine, written, dropped)  # going back loses only what the newer schema added
        if dropped:  # ... and a dropped table comes back empty, as the older code expects to find it
            assert dropped <= await tables(engine)
            assert all([await table_rows(engine, table) == [] for table in dropped])
            await insert(engine, {table: rows for table, rows in AT_0001.items() if table in dropped})
            await assert_kept(engine, written)
        if target == "0005" and engine.dialect.name == "sqlite":  # 0004's AUTOINCREMENT survives the way back
            async with engine.connect() as connection:
                schema = await connection.execute(text("SELECT sql FROM sqlite_master WHERE name = 'images'"))
                assert "AUTOINCREMENT" in schema.scalar_one()
    finally:
        await engine.dispose()


async def test_down_to_nothing_and_up_again(database_url: str) -> None:
    at_head = set(KEYS) - set().union(*DROPS.values())
    still = {table: rows for table, rows in AT_0001.items() if table in at_head}  # what the head schema holds
    engine = connect_database(database_url)
    try:
        await upgrade(engine)
        await insert(engine, still)
        await insert(engine, AT_0002)
        await insert(engine, AT_0003)
        await downgrade(engine, "base")
        assert await tables(engine) == set()
        await upgrade(engine)
        assert await tables(engine) == at_head
        assert all([await table_rows(engine, table) == [] for table in at_head])
        await insert(engine, still)  # and it works as a fresh database does
        await assert_kept(engine, [still])
    finally:
        await engine.dispose()
