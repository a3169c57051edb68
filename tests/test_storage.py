"""Storage on SQLite and PostgreSQL: migrations, per-thread context, forget, retention, search, faults."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pytest
from sqlalchemy import select, text, update

from clipchat.facts import PhotoFacts, Tag
from clipchat.kinds import ChatKind, MediaKind, Role
from storage import (
    AccessStatus,
    EmbeddingIndex,
    ImageRecord,
    NewImage,
    SentPhoto,
    Turn,
    UsageKind,
    UsageScope,
    access_of,
    add_sent_photos,
    add_turn,
    connect_database,
    decode_embeddings,
    encode_embedding,
    forget_user,
    image_by_message,
    image_under_discussion,
    make_sessionmaker,
    member_since,
    purge_older_than,
    recent_turns,
    reset_thread,
    rows_about_user,
    save_image,
    search_images,
    see_members,
    set_access,
    set_chat_switch,
    usage_on,
    use,
    write_with_retry,
)
from tests.bot_helpers import eventually
from tests.conftest import by_split

ALICE, BOB, GROUP = 1001, 1002, -100500


def photo(chat_id: int, sender_id: int | None, message_id: int, vector=None, model: str = "clip-test") -> NewImage:
    vector = np.random.default_rng(message_id).normal(size=8) if vector is None else vector
    facts = PhotoFacts(f"photo {message_id}", (Tag("cat", 0.9),), vector / np.linalg.norm(vector), model)
    return NewImage(
        chat_id=chat_id,
        sender_id=sender_id,
        message_id=message_id,
        file_id=f"file-{message_id}",
        file_unique_id=f"unique-{message_id}",
        facts=facts,
    )


async def test_migrations_build_exactly_the_models(engine) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from storage import Base

    def diff(connection):
        return compare_metadata(MigrationContext.configure(connection), Base.metadata)

    async with engine.connect() as connection:
        assert await connection.run_sync(diff) == []


async def test_deleting_a_person_or_a_photo_never_scans_a_whole_table(engine) -> None:
    """/forget deletes a person's rows and each deleted photo's turns are unlinked (ON DELETE SET NULL): every
    column a foreign key matches on must lead an index, or the database reads the whole table once per row it
    deletes (400 /forgets in a group of 4,000 people took 143 s on SQLite, 7.4 s with them: migration 0011)."""
    from sqlalchemy import inspect

    def uncovered(connection) -> list[str]:
        schema, missing = inspect(connection), []
        for table in schema.get_table_names():
            leading = {tuple(index["column_names"][:1]) for index in schema.get_indexes(table)}
            leading |= {tuple(u["column_names"][:1]) for u in schema.get_unique_constraints(table)}
            leading.add(tuple(schema.get_pk_constraint(table)["constrained_columns"][:1]))
            for key in schema.get_foreign_keys(table):
                if tuple(key["constrained_columns"][:1]) not in leading:
                    missing.append(f"{table}.{key['constrained_columns'][0]}")
        return sorted(missing)

    async with engine.connect() as connection:
        assert await connection.run_sync(uncovered) == []


async def test_open_database_migrates_a_blank_database(database_url: str) -> None:
    from storage import open_database

    engine, sessions = await open_database(database_url)
    try:
        async with sessions() as session:
            await add_turn(session, ALICE, ALICE, "user", "hello")
            await session.commit()
            assert [t.text for t in await recent_turns(session, ALICE, ALICE)] == ["hello"]
    finally:
        await engine.dispose()


async def test_roles_kinds_and_statuses_keep_their_strings_in_sql_and_read_back_as_enums(sessions) -> None:
    today = date.today()
    async with sessions() as session:
        await add_turn(session, GROUP, ALICE, Role.USER, "hello", chat_kind=ChatKind.SUPERGROUP)
        await save_image(session, photo(GROUP, ALICE, 5), chat_kind=ChatKind.SUPERGROUP)
        await set_access(session, BOB, AccessStatus.BANNED, None)
        await use(session, UsageScope.USER, ALICE, today, UsageKind.PHOTOS)
        await session.commit()
    async with sessions() as session:
        stored = (
            await session.execute(
                text(
                    "SELECT turns.role, chats.kind, images.media_kind, user_access.status, usage.scope, usage.kind "
                    "FROM turns, chats, images, user_access, usage"
                )
            )
        ).one()
        assert tuple(stored) == ("user", "supergroup", "photo", "banned", "user", "photos")  # no migration needed
        [turn] = await recent_turns(session, GROUP, ALICE)
        image = await session.scalar(select(ImageRecord))
        assert turn.role is Role.USER and image is not None and image.media_kind is MediaKind.PHOTO
        assert await access_of(session, BOB) is AccessStatus.BANNED
        assert await usage_on(session, UsageScope.USER, ALICE, today) == {UsageKind.PHOTOS: 1, UsageKind.QUESTIONS: 0}
        assert all(type(kind) is UsageKind for kind in await usage_on(session, UsageScope.USER, ALICE, today))
        with pytest.raises(ValueError, match="system"):
            await add_turn(session, GROUP, ALICE, "system", "not a role the threads know")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="muted"):
            await set_access(session, BOB, "muted", None)  # type: ignore[arg-type]


async def test_context_survives_a_restart_and_stays_per_user_and_chat(database_url: str, sessions) -> None:
    async with sessions() as session:
        await add_turn(session, ALICE, ALICE, "user", "my secret: I love pineapple pizza")
        await add_turn(session, GROUP, ALICE, "user", "what is in this photo?", chat_kind="supergroup")
        await add_turn(session, GROUP, ALICE, "assistant", "a small red circle.", chat_kind="supergroup")
        await add_turn(session, GROUP, BOB, "user", "and what colour is it?", chat_kind="supergroup")
        group_photo = await save_image(session, photo(GROUP, ALICE, 77), chat_kind="supergroup")
        await session.commit()

    restarted = connect_database(database_url)  # a new process: nothing but the database carries over
    try:
        async with make_sessionmaker(restarted)() as session:
            alice_group = [t.text for t in await recent_turns(session, GROUP, ALICE)]
            bob_group = [t.text for t in await recent_turns(session, GROUP, BOB)]
            alice_private = [t.text for t in await recent_turns(session, ALICE, ALICE)]
            assert alice_group == ["what is in this photo?", "a small red circle."]
            assert bob_group == ["and what colour is it?"]
            assert alice_private == ["my secret: I love pineapple pizza"]
            assert not any("pineapple" in text for text in alice_group + bob_group)
            # Bob never sent a photo, but may ask about Alice's by replying to it.
            replied = await image_under_discussion(session, GROUP, BOB, reply_to_message_id=77)
            assert replied is not None and replied.id == group_photo.id
            assert await image_under_discussion(session, GROUP, BOB) is None
            assert await image_under_discussion(session, ALICE, ALICE) is None  # her private thread has no photo
    finally:
        await restarted.dispose()


async def test_the_image_under_discussion(sessions) -> None:
    async with sessions() as session:
        first = await save_image(session, photo(ALICE, ALICE, 1))
        second = await save_image(session, photo(ALICE, ALICE, 2))
        assert (await image_under_discussion(session, ALICE, ALICE)).id == second.id  # the latest
        assert (await image_under_discussion(session, ALICE, ALICE, reply_to_message_id=1)).id == first.id
        assert (await image_under_discussion(session, ALICE, ALICE, reply_to_message_id=999)).id == second.id
        # In a group, a photo Bob discussed stays his subject even after Alice posts another.
        bobs = await save_image(session, photo(GROUP, ALICE, 10), chat_kind="group")
        await add_turn(session, GROUP, BOB, "user", "is there a dog?", image_id=bobs.id, chat_kind="group")
        await save_image(session, photo(GROUP, ALICE, 11), chat_kind="group")
        assert (await image_under_discussion(session, GROUP, BOB)).id == bobs.id


async def test_reset_clears_one_thread_only(sessions) -> None:
    async with sessions() as session:
        await add_turn(session, GROUP, ALICE, "user", "hello", chat_kind="group")
        await add_turn(session, GROUP, BOB, "user", "hi", chat_kind="group")
        await add_turn(session, ALICE, ALICE, "user", "private hello")
        assert await reset_thread(session, GROUP, ALICE) == 1
        assert await recent_turns(session, GROUP, ALICE) == []
        assert [t.text for t in await recent_turns(session, GROUP, BOB)] == ["hi"]
        assert [t.text for t in await recent_turns(session, ALICE, ALICE)] == ["private hello"]


async def test_a_forums_topics_are_threads_of_their_own(sessions) -> None:
    """Alice's photo and turns in topic 11 are not her subject in topic 12, nor in the forum's General; a reply
    still finds a photo posted in another topic (a message id names one message in the whole chat)."""
    async with sessions() as session:
        in_11 = await save_image(session, replace(photo(GROUP, ALICE, 20), topic_id=11), chat_kind="supergroup")
        in_12 = await save_image(session, replace(photo(GROUP, ALICE, 21), topic_id=12), chat_kind="supergroup")
        for topic, image in ((11, in_11), (12, in_12)):
            await add_turn(session, GROUP, ALICE, "user", f"about {topic}", image_id=image.id, topic_id=topic)
        assert (await image_under_discussion(session, GROUP, ALICE, topic_id=11)).id == in_11.id
        assert (await image_under_discussion(session, GROUP, ALICE, topic_id=12)).id == in_12.id
        assert await image_under_discussion(session, GROUP, ALICE) is None  # General: nothing posted there
        assert (await image_under_discussion(session, GROUP, ALICE, 20, topic_id=12)).id == in_11.id
        assert [t.text for t in await recent_turns(session, GROUP, ALICE, topic_id=11)] == ["about 11"]
        assert await reset_thread(session, GROUP, ALICE, topic_id=11) == 1
        assert await recent_turns(session, GROUP, ALICE, topic_id=11) == []
        assert [t.text for t in await recent_turns(session, GROUP, ALICE, topic_id=12)] == ["about 12"]


async def test_forget_leaves_nothing_about_the_user(sessions) -> None:
    async with sessions() as session:
        mine = await save_image(session, photo(ALICE, ALICE, 5))
        await add_turn(session, ALICE, ALICE, "user", "describe it", image_id=mine.id)
        await save_image(session, photo(GROUP, ALICE, 6), chat_kind="group")
        await add_turn(session, GROUP, ALICE, "user", "what is this?", chat_kind="group")
        bobs = await save_image(session, photo(GROUP, BOB, 7), chat_kind="group")
        await add_turn(session, GROUP, BOB, "user", "nice", chat_kind="group")
        await set_chat_switch(session, ALICE, "private", "language", "de", updated_by=ALICE)
        alices_in_group = await image_under_discussion(session, GROUP, ALICE)
        assert alices_in_group is not None
        await add_sent_photos(session, GROUP, [(50, alices_in_group.id), (51, bobs.id)])  # /search results
        await add_sent_photos(session, ALICE, [(52, mine.id)])
        await session.commit()
        assert sum((await rows_about_user(session, ALICE)).values()) > 0

        removed = await forget_user(session, ALICE)
        await session.commit()
        assert (removed.turns, removed.images, removed.settings, removed.users) == (2, 2, 1, 1)
        assert not any((await rows_about_user(session, ALICE)).values())
        texts = " ".join(t.text for t in await session.scalars(select(Turn)))
        assert "describe it" not in texts and "what is this" not in texts and "nice" in texts
        assert [i.id for i in await session.scalars(select(ImageRecord))] == [bobs.id]
        replied = await image_by_message(session, GROUP, 51)  # a reply to Bob's photo as /search sent it back
        assert replied is not None and replied.id == bobs.id
        assert await image_by_message(session, GROUP, 50) is None


async def test_forgetting_one_photo_takes_its_rows_and_the_turns_about_it_and_nothing_else(sessions) -> None:
    from storage import forget_image, image_by_message

    async with sessions() as session:
        gone = await save_image(session, photo(GROUP, ALICE, 5), chat_kind="group")
        twice = await save_image(session, photo(GROUP, ALICE, 5), chat_kind="group")  # an update handled twice
        kept = await save_image(session, photo(GROUP, ALICE, 6), chat_kind="group")
        await add_turn(session, GROUP, ALICE, "user", "what is it?", image_id=gone.id, chat_kind="group")
        await add_turn(session, GROUP, BOB, "assistant", "a cat", image_id=twice.id, chat_kind="group", message_id=9)
        await add_turn(session, GROUP, ALICE, "user", "and this?", image_id=kept.id, chat_kind="group")
        await session.commit()
        removed = await forget_image(session, gone)
        await session.commit()
        assert (removed.images, removed.turns) == (2, 2)
        assert [i.id for i in await session.scalars(select(ImageRecord))] == [kept.id]
        assert [t.text for t in await session.scalars(select(Turn))] == ["and this?"]
        assert await image_by_message(session, GROUP, 5) is None and await image_by_message(session, GROUP, 9) is None


async def test_forgetting_one_photo_of_an_album_takes_the_exchange_about_the_album(sessions) -> None:
    """The bot answers an album once, and the exchange is stored against its last photo; the answer still
    describes every photo, so forgetting the first one must take it too, and leave the other photos."""
    from storage import forget_image

    async with sessions() as session:
        album = [
            await save_image(session, replace(photo(GROUP, ALICE, n), media_group_id="trip"), chat_kind="group")
            for n in (21, 22, 23)
        ]
        await add_turn(session, GROUP, ALICE, "user", "what are these?", image_id=album[-1].id, chat_kind="group")
        await add_turn(
            session, GROUP, ALICE, "assistant", "1. a cat 2. a dog 3. a hat", image_id=album[-1].id, chat_kind="group"
        )
        await session.commit()
        removed = await forget_image(session, album[0])
        await session.commit()
        assert (removed.images, removed.turns) == (1, 2)
        assert [i.message_id for i in await session.scalars(select(ImageRecord))] == [22, 23]
        assert list(await session.scalars(select(Turn))) == []


async def test_recording_search_results_leaves_out_a_photo_forgotten_since_and_keeps_the_rest(sessions) -> None:
    """/search records what it sent once it has sent it: a result whose photo was forgotten meanwhile failed the
    whole write on the foreign key, so even the photos still stored were not remembered."""
    from storage import forget_image, image_exists

    async with sessions() as session:
        kept = await save_image(session, photo(GROUP, ALICE, 5), chat_kind="group")
        gone = await save_image(session, photo(GROUP, ALICE, 6), chat_kind="group")
        kept_id, gone_id = kept.id, gone.id
        await session.commit()
        await forget_image(session, gone)
        await session.commit()
        assert await image_exists(session, kept_id) and not await image_exists(session, gone_id)
        await add_sent_photos(session, GROUP, [(50, kept_id), (51, gone_id)])
        await session.commit()
        assert [(s.message_id, s.image_id) for s in await session.scalars(select(SentPhoto))] == [(50, kept_id)]
        replied = await image_by_message(session, GROUP, 50)  # a reply to the result asks about its photo
        assert replied is not None and replied.id == kept_id


async def test_after_forget_no_column_of_any_table_holds_the_user(sessions) -> None:
    """The oracle scans the database's own catalogue, so it also covers what forget_user never heard of."""
    from storage.update_order import SharedOrder
    from tests.oracles import columns_holding

    carol = 7_000_000_001  # far from every other id in these rows, so only she can match
    async with sessions() as session:
        mine = await save_image(session, photo(carol, carol, 5))
        await add_turn(session, carol, carol, "user", "describe it", image_id=mine.id)
        await save_image(session, photo(GROUP, carol, 6), chat_kind="group")
        await add_turn(session, GROUP, carol, "assistant", "a cat", chat_kind="group", message_id=77)
        await see_members(session, GROUP, [carol])  # when the bot first saw her in the group
        await set_chat_switch(session, GROUP, "group", "auto_caption", True, updated_by=carol)  # she is an admin
        await set_chat_switch(session, carol, "private", "language", "de", updated_by=carol)
        await session.commit()
    order = SharedOrder(sessions)
    await order.arrived(carol, 5000)  # her /forget, in flight in some process
    async with sessions() as session:
        before = await columns_holding(session, carol)
        assert {
            "users.id",
            "images.sender_id",
            "turns.user_id",
            "chat_settings.updated_by",
            "chat_settings.chat_id",
            "pending_updates.user_key",
            "chat_members.user_id",
        } <= set(before)
        await forget_user(session, carol)
        await session.commit()
    await order.done(carol, 5000)  # the /forget update finishes, as every update does
    async with sessions() as session:
        # but the record that she was forgotten (her id and the time, nothing else), kept on purpose
        assert await columns_holding(session, carol) == {"forgotten.user_id": 1}
        assert not any((await rows_about_user(session, carol)).values())


async def test_forgetting_again_after_a_restore_leaves_no_column_holding_the_user(sessions) -> None:
    """What a backup from before her /forget holds about her goes again, in every table, by the list of
    /forgets the replaced database kept; what she sent after coming back stays."""
    from storage import forget_again, forget_count
    from storage.models import ChatMember, PendingUpdate, ReindexRun, User
    from tests.oracles import columns_holding

    carol = 7_000_000_001
    long_ago = datetime.now(UTC) - timedelta(days=3)
    async with sessions() as session:  # the backup, as restored
        mine = await save_image(session, photo(carol, carol, 5))
        await add_turn(session, carol, carol, "user", "describe it", image_id=mine.id)
        await save_image(session, photo(GROUP, carol, 6), chat_kind="group")
        await add_turn(session, GROUP, carol, "assistant", "a cat", chat_kind="group", message_id=77)
        await set_chat_switch(session, GROUP, "group", "auto_caption", True, updated_by=carol)
        await set_chat_switch(session, carol, "private", "language", "de", updated_by=carol)
        session.add(PendingUpdate(user_key=carol, update_id=5000, arrived_at=long_ago))
        session.add(ReindexRun(embedding_model="clip-b", chat_id=carol, started_at=long_ago, beat_at=long_ago))
        session.add(ChatMember(chat_id=GROUP, user_id=carol, first_seen=long_ago))
        await use(session, UsageScope.USER, carol, long_ago.date(), UsageKind.PHOTOS)
        await session.commit()
    forgot_at = datetime.now(UTC) + timedelta(seconds=1)
    async with sessions() as session:
        await session.execute(update(ImageRecord).where(ImageRecord.id == mine.id).values(created_at=long_ago))
        # She came back after the /forget: a new user row, a new photo
        back = forgot_at + timedelta(hours=1)
        await session.execute(update(User).where(User.id == carol).values(first_seen=back))
        later = await save_image(session, photo(GROUP, carol, 8), chat_kind="group")
        await session.execute(update(ImageRecord).where(ImageRecord.id == later.id).values(created_at=back))
        removed = await forget_again(session, [(carol, forgot_at)])
        await session.commit()
    assert (removed.images, removed.turns, removed.users) == (2, 2, 0)
    async with sessions() as session:
        assert await columns_holding(session, carol) == {
            "forgotten.user_id": 1,
            "images.sender_id": 1,
            "users.id": 1,
        }
        assert await forget_count(session) == 1


def test_rows_about_user_knows_every_table() -> None:
    """A new table fails here until someone decides what /forget does with it."""
    from storage.lifecycle import USER_ROWS
    from storage.models import Base

    assert set(USER_ROWS) == set(Base.metadata.tables)


async def test_forget_removes_pending_updates_a_dead_process_left(sessions) -> None:
    from storage.models import PendingUpdate

    long_ago = datetime.now(UTC) - timedelta(hours=1)
    async with sessions() as session:
        session.add(PendingUpdate(user_key=ALICE, update_id=10, arrived_at=long_ago))  # its process died
        session.add(PendingUpdate(user_key=ALICE, update_id=11))  # the /forget itself, still running
        await session.commit()
        await forget_user(session, ALICE)
        await session.commit()
        left = [row.update_id for row in await session.scalars(select(PendingUpdate))]
    assert left == [11]


async def test_forgetting_an_anonymous_admin_keeps_the_group_and_its_switches(sessions) -> None:
    """Anonymous admins write as the group itself: their identity is the group's id."""
    from storage import chat_switches, set_chat_switch

    async with sessions() as session:
        await save_image(session, photo(GROUP, GROUP, 5), chat_kind="supergroup")
        await add_turn(session, GROUP, GROUP, "user", "what is it?", chat_kind="supergroup")
        await save_image(session, photo(GROUP, BOB, 6), chat_kind="supergroup")
        await set_chat_switch(session, GROUP, "supergroup", "auto_caption", True, updated_by=BOB)
        await session.commit()
        await forget_user(session, GROUP)
        await session.commit()
        assert not any((await rows_about_user(session, GROUP)).values())
        assert (await chat_switches(session, GROUP)).auto_caption
        assert [i.sender_id for i in await session.scalars(select(ImageRecord))] == [BOB]


async def test_a_database_that_hangs_fails_fast_instead_of_holding_the_user(tmp_path) -> None:
    """A server that accepts connections and never answers (a hung host, a dead network path):
    asyncpg alone waits 60 s per connect, and a write tries 8 times."""
    import time

    async def silent(reader, writer) -> None:
        await reader.read(-1)  # accept, read, never answer

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    engine = connect_database(f"postgresql+asyncpg://postgres@127.0.0.1:{port}/test", timeout=0.5)
    started = time.monotonic()
    try:
        with pytest.raises(Exception) as failure:
            await write_with_retry(make_sessionmaker(engine), lambda session: session.execute(select(1)), deadline=2.0)
    finally:
        await engine.dispose()
        server.close()
    from clipchat.errors import StorageDown
    from storage.database import is_transient

    # StorageDown is what the bot answers with "try again in a minute", not "something went wrong"
    assert isinstance(failure.value, StorageDown) and is_transient(failure.value.__cause__)
    assert time.monotonic() - started < 6


async def test_retries_stop_at_their_deadline_whatever_the_attempts_left() -> None:
    """One retry policy for network and database, capped in total time as well as in tries."""
    import time

    from clipchat.retrying import retrying

    tries, started = 0, time.monotonic()
    with pytest.raises(ConnectionError):
        async for attempt in retrying(
            lambda error: True,
            attempts=1000,
            first_delay=0.05,
            max_delay=0.05,
            deadline=0.5,
            what="a call that always fails",
        ):
            with attempt:
                tries += 1
                raise ConnectionError("down")
    assert time.monotonic() - started < 1.5 and 5 <= tries < 20


async def test_retention_purges_old_turns_and_images(sessions) -> None:
    async with sessions() as session:
        old_image = await save_image(session, photo(ALICE, ALICE, 1))
        await add_turn(session, ALICE, ALICE, "user", "old question", image_id=old_image.id)
        long_ago = datetime.now(UTC) - timedelta(days=120)
        await session.execute(update(Turn).values(created_at=long_ago))
        await session.execute(update(ImageRecord).values(created_at=long_ago))
        new_image = await save_image(session, photo(ALICE, ALICE, 2))
        await add_turn(session, ALICE, ALICE, "user", "new question")
        await add_sent_photos(session, ALICE, [(30, new_image.id), (31, new_image.id)])  # /search sent it twice
        await session.execute(update(SentPhoto).where(SentPhoto.message_id == 30).values(sent_at=long_ago))
        removed = await purge_older_than(session, timedelta(days=90))
        await session.commit()
        assert (removed.turns, removed.images) == (1, 1)
        assert [sent.message_id for sent in await session.scalars(select(SentPhoto))] == [31]
        assert [t.text for t in await recent_turns(session, ALICE, ALICE)] == ["new question"]
        assert [i.message_id for i in await session.scalars(select(ImageRecord))] == [2]


def test_embeddings_are_stored_compactly() -> None:
    vector = np.random.default_rng(0).normal(size=512).astype(np.float32)
    vector /= np.linalg.norm(vector)
    blob = encode_embedding(vector)
    assert len(blob) == 1024  # float16
    assert np.abs(decode_embeddings([blob])[0] - vector).max() < 1e-3


async def test_search_finds_the_photo_a_phrase_describes(sessions, world_models, heldout, figure) -> None:
    sample = heldout[:200]
    vectors = world_models.encoder.embed_images([h.image for h in sample]).cpu().numpy()
    model = world_models.encoder.identity
    async with sessions() as session:
        for number, vector in enumerate(vectors):
            await save_image(session, photo(GROUP, ALICE, number, vector=vector, model=model), chat_kind="group")
        # Vectors from another CLIP must never be compared with this one's, however close they look.
        await save_image(session, photo(GROUP, ALICE, 9999, vector=vectors[0], model="another-clip"), chat_kind="group")
        await session.commit()
        index = EmbeddingIndex()
        queries = world_models.encoder.embed_texts([h.scene.caption for h in sample]).cpu().numpy()
        found = {}
        for number, (held, query) in enumerate(zip(sample, queries)):
            [(record, score)] = await search_images(session, index, GROUP, model, query, k=1)
            assert record.embedding_model == model and -1 <= score <= 1
            found[held.path] = record.message_id == number
    recall = by_split(sample, lambda h: found[h.path])
    for split, value in recall.items():
        figure(f"storage search recall@1 in a chat of 200, {split} combinations", value)
    assert recall["seen"] >= 0.90 and recall["unseen"] >= 0.90, recall


async def test_the_search_index_follows_new_and_deleted_photos(sessions) -> None:
    index = EmbeddingIndex()
    target = np.zeros(8)
    target[3] = 1.0
    async with sessions() as session:
        for number in range(5):
            await save_image(session, photo(ALICE, ALICE, number))
        await session.commit()
        before = await search_images(session, index, ALICE, "clip-test", target, k=5)
        assert len(before) == 5 and all(r.message_id != 42 for r, _ in before)
        await save_image(session, photo(ALICE, ALICE, 42, vector=target))
        await session.commit()
        [(best, score)] = await search_images(session, index, ALICE, "clip-test", target, k=1)
        assert best.message_id == 42 and score > 0.99
        await forget_user(session, ALICE)
        await session.commit()
        assert await search_images(session, index, ALICE, "clip-test", target) == []


async def test_a_search_since_someone_came_finds_only_what_was_posted_after(sessions) -> None:
    """A group's photos from before the bot first saw someone there are not theirs to find, even the best match."""
    index = EmbeddingIndex()
    target = np.zeros(8)
    target[2] = 1.0
    async with sessions() as session:
        older = await save_image(session, photo(GROUP, ALICE, 1, vector=target))
        await session.execute(
            update(ImageRecord).where(ImageRecord.id == older.id).values(created_at=datetime.now(UTC) - timedelta(1))
        )
        await see_members(session, GROUP, [BOB])
        newer = await save_image(session, photo(GROUP, ALICE, 2))
        await session.commit()
        since = await member_since(session, GROUP, BOB)
        assert since is not None
        assert [r.id for r, _ in await search_images(session, index, GROUP, "clip-test", target, k=5)] == [
            older.id,
            newer.id,
        ]
        found = await search_images(session, index, GROUP, "clip-test", target, k=5, since=since)
        assert [r.id for r, _ in found] == [newer.id]  # the older one matches best, and stays out of sight
        later = since + timedelta(seconds=1)
        assert await search_images(session, index, GROUP, "clip-test", target, since=later) == []


async def test_a_forgotten_photo_never_lends_its_id_or_vector_to_the_next_one(sessions) -> None:
    """SQLite reused a deleted newest row's id, and the index kept the forgotten vector under the new photo."""
    index = EmbeddingIndex()
    theirs, mine = np.zeros(8), np.zeros(8)
    theirs[1], mine[5] = 1.0, 1.0
    async with sessions() as session:
        await save_image(session, photo(GROUP, ALICE, 1))
        forgotten = await save_image(session, photo(GROUP, BOB, 2, vector=theirs))  # the chat's newest photo
        await session.commit()
        assert (await search_images(session, index, GROUP, "clip-test", theirs, k=1))[0][0].id == forgotten.id
        await forget_user(session, BOB)
        await session.commit()
        new = await save_image(session, photo(GROUP, ALICE, 3, vector=mine))
        await session.commit()
        assert new.id != forgotten.id
        [(best, score)] = await search_images(session, index, GROUP, "clip-test", mine, k=1)
        assert best.id == new.id and score > 0.99  # found by its own vector, not the forgotten one


async def test_many_chats_writing_at_once_keep_every_turn_in_order(sessions) -> None:
    async def conversation(chat_id: int) -> None:
        for step in range(8):

            async def write(session, step=step):
                await add_turn(session, chat_id, chat_id, "user", f"message {step}")

            await write_with_retry(sessions, write)

    await asyncio.gather(*(conversation(2000 + n) for n in range(25)))
    async with sessions() as session:
        for n in range(25):
            turns = await recent_turns(session, 2000 + n, 2000 + n, limit=100)
            assert [t.text for t in turns] == [f"message {step}" for step in range(8)]


async def test_a_write_interrupted_by_a_database_outage_is_retried_not_lost(database_url: str, sessions) -> None:
    attempts = []
    postgres = database_url.startswith("postgresql")

    async def write(session) -> None:
        attempts.append(1)
        first = len(attempts) == 1
        if first and not postgres:
            await lock_sqlite_briefly(database_url, session)
        await add_turn(session, ALICE, ALICE, "user", "please remember this")
        if first and postgres:
            await drop_every_connection(database_url)  # mid-transaction, as a server restart does
            await add_turn(session, ALICE, ALICE, "user", "second statement of the same write")

    await write_with_retry(sessions, write, first_delay=0.05)
    async with sessions() as session:
        texts = [t.text for t in await recent_turns(session, ALICE, ALICE)]
    assert len(attempts) >= 2 and texts == ["please remember this"]


async def drop_every_connection(database_url: str) -> None:
    import asyncpg
    from sqlalchemy.engine import make_url

    url = make_url(database_url)
    admin = await asyncpg.connect(user=url.username, host=url.host, port=url.port or 5432, database="postgres")
    await admin.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
        url.database,
    )
    await admin.close()


async def lock_sqlite_briefly(database_url: str, session) -> None:
    """Another process takes the write lock for 0.3 s; this connection will not wait for it."""
    import sqlite3

    from sqlalchemy import text

    blocker = sqlite3.connect(database_url.split("///", 1)[1], isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")

    def release() -> None:
        blocker.execute("COMMIT")
        blocker.close()

    asyncio.get_running_loop().call_later(0.3, release)
    await session.execute(text("PRAGMA busy_timeout=0"))


def test_database_url_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    from storage import StorageSettings

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", "postgres://bot:secret@db.internal:5432/clipchat")
    assert StorageSettings().url() == "postgresql+asyncpg://bot:secret@db.internal:5432/clipchat"
    monkeypatch.delenv("DATABASE_URL")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    default = StorageSettings().url()
    assert default.startswith("sqlite+aiosqlite:///") and default.endswith("clipchat.db")


async def test_first_words_from_many_people_in_a_new_group_all_land(sessions) -> None:
    """Everyone's first message races to create the same chat row; none may fail."""

    async def first_words(user_id: int) -> None:
        async def write(session):
            await add_turn(session, GROUP, user_id, "user", f"hello from {user_id}", chat_kind="supergroup")

        await write_with_retry(sessions, write)

    await asyncio.gather(*(first_words(3000 + n) for n in range(12)))
    async with sessions() as session:
        for n in range(12):
            assert [t.text for t in await recent_turns(session, GROUP, 3000 + n)] == [f"hello from {3000 + n}"]


async def test_shared_order_lets_each_users_oldest_update_go_first(sessions) -> None:
    import asyncio

    from storage.update_order import SharedOrder

    order = SharedOrder(sessions, reorder_window=0.05, poll=0.01)
    assert await order.arrived(7, 12) == 1  # the later update reached its process first
    assert await order.arrived(7, 11) == 2  # the count bounds each user's queue across processes
    assert await order.arrived(8, 40) == 1  # another user is never held up
    await asyncio.wait_for(order.wait_turn(8, 40), 2)
    checks, oldest = [], order._oldest

    async def counted(session, key):  # each time an update looks whether it is its turn
        checks.append(key)
        return await oldest(session, key)

    order._oldest = counted
    later = asyncio.create_task(order.wait_turn(7, 12))
    await asyncio.wait_for(order.wait_turn(7, 11), 2)
    looked = checks.count(7)
    await eventually(lambda: checks.count(7) >= looked + 3, what="12 to look for its turn again")
    assert not later.done()  # 12 waits while 11 runs
    await order.done(7, 11)
    await asyncio.wait_for(later, 2)


async def test_a_database_that_stays_down_is_storage_down_and_other_os_errors_are_not(tmp_path) -> None:
    """`unavailable()` took any OSError for the database: a full disk elsewhere or a socket error to Telegram
    was reported as "database unavailable". The storage layer now says StorageDown itself."""
    from clipchat.errors import StorageDown
    from storage import connect_database, make_sessionmaker, write_with_retry

    engine = connect_database(f"sqlite+aiosqlite:///{tmp_path / 'no' / 'such' / 'dir.db'}")
    try:
        with pytest.raises(StorageDown):
            await write_with_retry(
                make_sessionmaker(engine), lambda session: session.execute(text("SELECT 1")), attempts=2, deadline=1
            )
    finally:
        await engine.dispose()


@pytest.mark.parametrize(
    "error",
    [OSError(28, "No space left on device", "/tmp/upload"), ConnectionResetError("Connection reset by peer")],
    ids=["a full disk elsewhere", "a socket error"],
)
async def test_an_os_error_outside_the_database_is_not_reported_as_the_database(error, caplog) -> None:
    import logging
    from types import SimpleNamespace

    from bot.adapter.application import on_error

    caplog.set_level(logging.INFO)
    await on_error(None, SimpleNamespace(error=error, bot_data=SimpleNamespace(services=None)))
    assert "database" not in caplog.text and "unhandled error" in caplog.text


OLD_GROUP, SUPERGROUP = -4_001, -1_000_000_004_001  # a group, and the supergroup Telegram upgraded it to


async def fill_a_group_before_its_upgrade(session) -> None:
    from storage import set_chat_switch

    kept = await save_image(session, photo(OLD_GROUP, ALICE, 5), chat_kind="group")
    await add_turn(session, OLD_GROUP, ALICE, "user", "what is it?", image_id=kept.id, chat_kind="group")
    await add_sent_photos(session, OLD_GROUP, [(40, kept.id)])  # /search sent it back as message 40
    await save_image(session, photo(OLD_GROUP, OLD_GROUP, 6), chat_kind="group")  # an anonymous admin's
    await add_turn(session, OLD_GROUP, OLD_GROUP, "user", "and this one?", chat_kind="group")
    await set_chat_switch(session, OLD_GROUP, "group", "index_photos", False, updated_by=OLD_GROUP)
    await set_chat_switch(session, OLD_GROUP, "group", "language", "es", updated_by=BOB)
    await set_chat_switch(session, OLD_GROUP, "group", "daily_photos", 7, updated_by=None)
    for _ in range(3):
        await use(session, "chat", OLD_GROUP, date.today(), "photos")
    await use(session, "user", OLD_GROUP, date.today(), "questions")
    await set_access(session, OLD_GROUP, "banned", 99)
    await save_image(session, photo(GROUP, BOB, 7), chat_kind="supergroup")  # another chat: stays
    await use(session, "chat", GROUP, date.today(), "photos")
    await see_members(session, OLD_GROUP, [ALICE, OLD_GROUP])  # Alice, and an anonymous admin, seen there
    await see_members(session, GROUP, [ALICE])  # another chat: stays


async def test_an_upgraded_group_takes_every_row_to_its_new_id_once(sessions) -> None:
    """Telegram gives a group upgraded to a supergroup a new id: nothing moved, so its switches, budgets,
    photos, conversations and ban stayed under the old one and the supergroup started from the defaults."""
    from storage import Moved, chat_switches, move_chat
    from tests.oracles import columns_holding

    async with sessions() as session:
        await fill_a_group_before_its_upgrade(session)
        await session.commit()
    async with sessions() as session:
        seen = await member_since(session, OLD_GROUP, ALICE)
    moved = await write_with_retry(sessions, lambda session: move_chat(session, OLD_GROUP, SUPERGROUP))
    assert moved == Moved(images=2, turns=2, settings=True, usage=2, access=AccessStatus.BANNED, members=2)
    async with sessions() as session:
        assert await columns_holding(session, OLD_GROUP) == {}
        switches = await chat_switches(session, SUPERGROUP)
        assert (switches.index_photos, switches.language, switches.daily_photos) == (False, "es", 7)
        assert (await usage_on(session, "chat", SUPERGROUP, date.today()))["photos"] == 3
        assert (await usage_on(session, "user", SUPERGROUP, date.today()))["questions"] == 1
        assert await access_of(session, SUPERGROUP) == AccessStatus.BANNED
        assert [t.text for t in await recent_turns(session, SUPERGROUP, ALICE)] == ["what is it?"]
        assert [t.text for t in await recent_turns(session, SUPERGROUP, SUPERGROUP)] == ["and this one?"]
        discussed = await image_under_discussion(session, SUPERGROUP, ALICE)
        assert discussed is not None and discussed.message_id == 5
        senders = {i.message_id: (i.chat_id, i.sender_id) for i in await session.scalars(select(ImageRecord))}
        assert senders == {5: (SUPERGROUP, ALICE), 6: (SUPERGROUP, SUPERGROUP), 7: (GROUP, BOB)}
        assert (await usage_on(session, "chat", GROUP, date.today()))["photos"] == 1
        assert await member_since(session, SUPERGROUP, ALICE) == seen  # /search finds her the group's photos
        assert await member_since(session, SUPERGROUP, SUPERGROUP) is not None
        assert await member_since(session, GROUP, ALICE) is not None
    again = await write_with_retry(sessions, lambda session: move_chat(session, OLD_GROUP, SUPERGROUP))
    assert again == Moved() and not again.anything  # the other chat's announcement finds nothing left


async def test_both_announcements_at_once_move_each_row_once_and_keep_the_supergroups_own(sessions) -> None:
    """Both chats announce the upgrade, maybe to two processes at once: counts must not be added twice, and a
    setting the supergroup already changed keeps its value."""
    from storage import chat_switches, move_chat, set_chat_switch

    async with sessions() as session:
        await fill_a_group_before_its_upgrade(session)
        await set_chat_switch(session, SUPERGROUP, "supergroup", "language", "ru", updated_by=BOB)
        await use(session, "chat", SUPERGROUP, date.today(), "photos")
        await session.commit()
    async with sessions() as session:
        seen = await member_since(session, OLD_GROUP, ALICE)
        await see_members(session, SUPERGROUP, [ALICE])  # she wrote in the supergroup before its announcement
        await session.commit()
    results = await asyncio.gather(
        *(write_with_retry(sessions, lambda session: move_chat(session, OLD_GROUP, SUPERGROUP)) for _ in range(4))
    )
    assert sorted(moved.images for moved in results) == [0, 0, 0, 2]
    assert [moved.settings for moved in results].count(True) == 1
    async with sessions() as session:
        switches = await chat_switches(session, SUPERGROUP)
        assert (switches.index_photos, switches.language, switches.daily_photos) == (False, "ru", 7)
        assert (await usage_on(session, "chat", SUPERGROUP, date.today()))["photos"] == 4
        assert await access_of(session, SUPERGROUP) == AccessStatus.BANNED
        assert await member_since(session, SUPERGROUP, ALICE) == seen  # the earlier of her two first times


async def test_a_reply_in_the_supergroup_never_points_at_the_old_groups_message_of_that_number(sessions) -> None:
    """The supergroup numbers its messages anew: its message 40 or 5 is not the old group's. Moved rows kept
    the old ids, so a reply to the supergroup's 5th message was taken for a reply to Alice's old photo, and
    Bob's question was answered about her photo instead of his own."""
    from storage import move_chat

    async with sessions() as session:
        await fill_a_group_before_its_upgrade(session)
        await session.commit()
    await write_with_retry(sessions, lambda session: move_chat(session, OLD_GROUP, SUPERGROUP))
    async with sessions() as session:
        bobs = await save_image(session, photo(SUPERGROUP, BOB, 3), chat_kind="supergroup")
        await session.commit()
    async with sessions() as session:
        assert await image_by_message(session, SUPERGROUP, 40) is None  # the old /search result's number
        assert await image_by_message(session, SUPERGROUP, 5) is None  # the old photo's number
        discussed = await image_under_discussion(session, SUPERGROUP, BOB, reply_to_message_id=5)
        assert discussed is not None and discussed.id == bobs.id
        replied = await image_by_message(session, SUPERGROUP, 3)  # a photo posted in the supergroup itself
        assert replied is not None and replied.id == bobs.id


def test_moving_a_chat_knows_every_table() -> None:
    """A new table fails here until someone decides what a group's upgrade does with it."""
    from storage.chat_moves import CHAT_ROWS
    from storage.models import Base

    assert set(CHAT_ROWS) == set(Base.metadata.tables)
