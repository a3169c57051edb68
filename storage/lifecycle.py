"""Retention and forgetting: what leaves the database, and when."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Exists, delete, exists, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from clipchat.kinds import ChatKind

from .database import changed_rows
from .models import (
    Chat,
    ChatMember,
    ChatSettings,
    Forgotten,
    ImageRecord,
    PendingUpdate,
    ReindexRun,
    SentPhoto,
    Turn,
    Usage,
    UsageScope,
    User,
    UserAccess,
)


@dataclass(frozen=True)
class Removed:
    turns: int = 0
    images: int = 0
    settings: int = 0
    users: int = 0


async def purge_older_than(session: AsyncSession, age: timedelta, now: datetime | None = None) -> Removed:
    """Delete turns and image records older than `age`; the bot's JobQueue runs this daily."""
    cutoff = (now or datetime.now(UTC)) - age
    turns = await session.execute(delete(Turn).where(Turn.created_at < cutoff))
    images = await session.execute(delete(ImageRecord).where(ImageRecord.created_at < cutoff))
    await session.execute(delete(SentPhoto).where(SentPhoto.sent_at < cutoff))  # a reply to them is stale too
    return Removed(turns=changed_rows(turns), images=changed_rows(images))


def _private_chat(user_id: int) -> ColumnElement[bool]:
    return (Chat.id == user_id) & (Chat.kind == ChatKind.PRIVATE)


# Where every table mentions a person (or the group or channel identity they write as), as a filter.
# Every table is listed, even one that never does, so that a new table fails the forgetting test
# until someone decides how /forget treats it.
USER_ROWS: dict[str, Callable[[int], ColumnElement[bool]]] = {
    "users": lambda user_id: User.id == user_id,
    "turns": lambda user_id: Turn.user_id == user_id,
    "images": lambda user_id: ImageRecord.sender_id == user_id,
    "sent_photos": lambda user_id: (  # the bot's messages showing their photos, or sent into their private chat
        SentPhoto.image_id.in_(select(ImageRecord.id).where(ImageRecord.sender_id == user_id))
        | SentPhoto.chat_id.in_(select(Chat.id).where(_private_chat(user_id)))
    ),
    "chats": _private_chat,  # a private chat's id is the user's; a group an anonymous admin wrote as stays
    "chat_settings": lambda user_id: (
        (ChatSettings.updated_by == user_id) | ChatSettings.chat_id.in_(select(Chat.id).where(_private_chat(user_id)))
    ),
    "pending_updates": lambda user_id: PendingUpdate.user_key == user_id,
    "reindex_runs": lambda user_id: ReindexRun.chat_id == user_id,  # a run on one private chat names its user
    "user_access": lambda user_id: UserAccess.user_id == user_id,
    "usage": lambda user_id: (Usage.subject_id == user_id) & (Usage.scope == UsageScope.USER),
    "chat_members": lambda user_id: ChatMember.user_id == user_id,  # which groups they are in, and since when
    "forgotten": lambda user_id: Forgotten.user_id == user_id,
}
# What /forget keeps on purpose, and why: without these, /forget would lift a ban or refill today's budget,
# and restoring a backup would undo it.
KEPT_AFTER_FORGET = {
    "user_access": "an operator's ban or allowance is the operator's record, not the user's",
    "usage": "today's counts (numbers only) stay until the day is over, then go with the daily upkeep",
    "forgotten": "the record of the /forget itself (the id and when, nothing else): a restored backup "
    "taken before it is forgotten again, and other processes learn to drop their cached phrases",
}
TABLES = {
    model.__tablename__: model
    for model in (
        User,
        Turn,
        ImageRecord,
        SentPhoto,
        Chat,
        ChatSettings,
        PendingUpdate,
        ReindexRun,
        UserAccess,
        Usage,
        ChatMember,
        Forgotten,
    )
}


async def forget_user(
    session: AsyncSession, user_id: int, now: datetime | None = None, pending_grace: timedelta = timedelta(minutes=5)
) -> Removed:
    """Delete everything about a user: their turns everywhere, the images they sent, their private chat
    and its settings, their name on a chat's switches, when they were first seen in each group, and the
    user row itself (in a group, they are seen anew from their next message); and note that they were
    forgotten, and when (`Forgotten`), so that a restored backup forgets them again (`forget_again`).

    Their rows in `pending_updates` (update ids, nothing they said) younger than `pending_grace` belong
    to updates still running, the /forget itself among them, which remove them as they finish (deleting
    them here would let another process run the user's later updates out of order); older ones were
    left by a process that died, and go now."""
    now = now or datetime.now(UTC)
    turns = await session.execute(delete(Turn).where(USER_ROWS["turns"](user_id)))
    await session.execute(delete(SentPhoto).where(USER_ROWS["sent_photos"](user_id)))
    images = await session.execute(delete(ImageRecord).where(USER_ROWS["images"](user_id)))
    private = await session.execute(
        delete(ChatSettings).where(ChatSettings.chat_id.in_(select(Chat.id).where(_private_chat(user_id))))
    )
    await session.execute(delete(Chat).where(_private_chat(user_id)))
    # A group's switches stay as they are; only who flipped them is forgotten.
    await session.execute(update(ChatSettings).where(ChatSettings.updated_by == user_id).values(updated_by=None))
    cutoff = now - pending_grace
    await session.execute(
        delete(PendingUpdate).where(USER_ROWS["pending_updates"](user_id), PendingUpdate.arrived_at < cutoff)
    )
    # A re-index of their private chat has nothing left to do there; its runner carries on harmlessly.
    await session.execute(delete(ReindexRun).where(USER_ROWS["reindex_runs"](user_id)))
    await session.execute(delete(Usage).where(USER_ROWS["usage"](user_id), Usage.day < now.date()))
    await session.execute(delete(ChatMember).where(USER_ROWS["chat_members"](user_id)))
    users = await session.execute(delete(User).where(USER_ROWS["users"](user_id)))
    session.add(Forgotten(user_id=user_id, forgotten_at=now))
    await session.flush()
    return Removed(
        turns=changed_rows(turns),
        images=changed_rows(images),
        settings=changed_rows(private),
        users=changed_rows(users),
    )


async def forget_image(session: AsyncSession, image: ImageRecord) -> Removed:
    """Delete one photo: every row kept of its message (an update handled twice keeps two), and the turns
    about it, so that neither /search nor a follow-up finds it again. The bot answers an album once, stored
    against one of its photos, and that answer describes them all: for an album photo, the turns about any
    photo of its album go too."""
    same = (
        (ImageRecord.chat_id == image.chat_id)
        & (ImageRecord.message_id == image.message_id)
        & (ImageRecord.file_unique_id == image.file_unique_id)
    )
    about = same
    if image.media_group_id is not None:
        about = same | ((ImageRecord.chat_id == image.chat_id) & (ImageRecord.media_group_id == image.media_group_id))
    turns = await session.execute(delete(Turn).where(Turn.image_id.in_(select(ImageRecord.id).where(about))))
    images = await session.execute(delete(ImageRecord).where(same))
    return Removed(turns=changed_rows(turns), images=changed_rows(images))


async def forgotten_entries(session: AsyncSession) -> list[tuple[int, datetime]]:
    """Every /forget recorded: (the id, when)."""
    rows = await session.execute(select(Forgotten.user_id, Forgotten.forgotten_at).order_by(Forgotten.forgotten_at))
    return [(user_id, _aware(when)) for user_id, when in rows.tuples()]


async def forget_count(session: AsyncSession) -> int:
    """How many /forgets the database records: it only grows (a restore keeps the list it found), so a
    process that sees it change knows someone was forgotten meanwhile."""
    return await session.scalar(select(func.count()).select_from(Forgotten)) or 0


async def forget_again(session: AsyncSession, entries: list[tuple[int, datetime]]) -> Removed:
    """After a restore: add `entries` (the /forgets the replaced database recorded) to those the backup
    holds, then delete again what `forget_user` deletes, of what was made up to a /forget of its person.
    What they sent after coming back stays; so do their operator's word and the last day's counts, as
    /forget keeps them. One statement a table, whatever the number of /forgets."""
    if entries:
        dialect = {"sqlite": sqlite, "postgresql": postgresql}[session.get_bind().dialect.name]
        rows = [{"user_id": user_id, "forgotten_at": when} for user_id, when in entries]
        for start in range(0, len(rows), 400):  # SQLite's bound on parameters in one statement
            chunk = rows[start : start + 400]
            await session.execute(dialect.insert(Forgotten).values(chunk).on_conflict_do_nothing())

    def forgotten(who: InstrumentedAttribute[Any], made: InstrumentedAttribute[datetime] | None) -> Exists:
        """The row's person was forgotten after it was made (`made` None: ever)."""
        match = Forgotten.user_id == who
        return exists().where(match if made is None else match & (made <= Forgotten.forgotten_at))

    turns = await session.execute(delete(Turn).where(forgotten(Turn.user_id, Turn.created_at)))
    images = await session.execute(delete(ImageRecord).where(forgotten(ImageRecord.sender_id, ImageRecord.created_at)))
    private = (Chat.kind == ChatKind.PRIVATE) & forgotten(Chat.id, Chat.first_seen)
    settings = await session.execute(
        delete(ChatSettings).where(ChatSettings.chat_id.in_(select(Chat.id).where(private)))
    )
    await session.execute(delete(Chat).where(private))
    # who flipped a group's switch keeps no time: forgotten whenever
    await session.execute(update(ChatSettings).where(forgotten(ChatSettings.updated_by, None)).values(updated_by=None))
    await session.execute(delete(PendingUpdate).where(forgotten(PendingUpdate.user_key, PendingUpdate.arrived_at)))
    await session.execute(delete(ReindexRun).where(forgotten(ReindexRun.chat_id, ReindexRun.started_at)))
    await session.execute(delete(ChatMember).where(forgotten(ChatMember.user_id, ChatMember.first_seen)))
    latest = select(Forgotten.user_id, func.max(Forgotten.forgotten_at)).group_by(Forgotten.user_id)
    for user_id, when in (await session.execute(latest)).tuples().all():  # by the primary key: one lookup each
        await session.execute(delete(Usage).where(USER_ROWS["usage"](user_id), Usage.day < _aware(when).date()))
    users = await session.execute(delete(User).where(forgotten(User.id, User.first_seen)))
    return Removed(
        turns=changed_rows(turns),
        images=changed_rows(images),
        settings=changed_rows(settings),
        users=changed_rows(users),
    )


def _aware(when: datetime) -> datetime:
    """SQLite hands times back without their zone; every time stored here is UTC."""
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


async def rows_about_user(session: AsyncSession, user_id: int) -> dict[str, int]:
    """How many rows of each table still mention the user: none after `forget_user` (once the
    updates that were running have finished), but for the tables /forget keeps on purpose."""
    return {
        name: await session.scalar(select(func.count()).select_from(TABLES[name]).where(where(user_id))) or 0
        for name, where in USER_ROWS.items()
        if name not in KEPT_AFTER_FORGET
    }


async def statistics(session: AsyncSession) -> dict[str, int]:
    """Row counts for the periodic statistics log line."""
    counts = {}
    for name, model in (("users", User), ("chats", Chat), ("images", ImageRecord), ("turns", Turn)):
        counts[name] = await session.scalar(select(func.count()).select_from(model)) or 0
    return counts


async def maintain(engine: AsyncEngine) -> str:
    """Keep the planner's statistics fresh and the SQLite write-ahead log short; returns what it did."""
    if engine.dialect.name == "sqlite":
        async with engine.connect() as connection:
            await connection.exec_driver_sql("PRAGMA optimize")
            await connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        return "sqlite: optimize, wal_checkpoint"
    if engine.dialect.name == "postgresql":
        async with engine.connect() as connection:
            await connection.execution_options(isolation_level="AUTOCOMMIT")
            await connection.exec_driver_sql("ANALYZE")
        return "postgresql: analyze"
    return f"{engine.dialect.name}: nothing to do"
