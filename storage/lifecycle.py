"""Retention and forgetting: what leaves the database, and when."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from .models import Chat, ChatSettings, ImageRecord, Turn, User, UserSettings


@dataclass(frozen=True)
class Removed:
    turns: int = 0
    images: int = 0
    settings: int = 0
    users: int = 0


async def purge_older_than(session: AsyncSession, age: timedelta, now: datetime | None = None) -> Removed:
    """Delete turns and image records older than `age`; the bot's JobQueue runs this daily."""
    cutoff = (now or datetime.now(timezone.utc)) - age
    turns = await session.execute(delete(Turn).where(Turn.created_at < cutoff))
    images = await session.execute(delete(ImageRecord).where(ImageRecord.created_at < cutoff))
    return Removed(turns=turns.rowcount or 0, images=images.rowcount or 0)


async def forget_user(session: AsyncSession, user_id: int) -> Removed:
    """Delete everything about a user: their turns everywhere, the images they sent, their settings,
    their private chat, their name on a chat's switches, and the user row itself.

    Their rows in `pending_updates` (update ids, nothing they said) are left to the updates that own
    them, which remove them as they finish: deleting them here would let another process run the
    user's later updates out of order."""
    turns = await session.execute(delete(Turn).where(Turn.user_id == user_id))
    images = await session.execute(delete(ImageRecord).where(ImageRecord.sender_id == user_id))
    settings = await session.execute(delete(UserSettings).where(UserSettings.user_id == user_id))
    # A private chat's id is the user's id; its settings go with it.
    private = await session.execute(delete(ChatSettings).where(ChatSettings.chat_id == user_id))
    await session.execute(delete(Chat).where(Chat.id == user_id, Chat.kind == "private"))
    # A group's switches stay as they are; only who flipped them is forgotten.
    await session.execute(update(ChatSettings).where(ChatSettings.updated_by == user_id).values(updated_by=None))
    users = await session.execute(delete(User).where(User.id == user_id))
    return Removed(turns=turns.rowcount or 0, images=images.rowcount or 0,
                   settings=(settings.rowcount or 0) + (private.rowcount or 0), users=users.rowcount or 0)


async def rows_about_user(session: AsyncSession, user_id: int) -> int:
    """How many rows still mention the user: zero after `forget_user`."""
    counts = [
        await session.scalar(select(func.count()).select_from(Turn).where(Turn.user_id == user_id)),
        await session.scalar(select(func.count()).select_from(ImageRecord).where(ImageRecord.sender_id == user_id)),
        await session.scalar(select(func.count()).select_from(UserSettings).where(UserSettings.user_id == user_id)),
        await session.scalar(select(func.count()).select_from(User).where(User.id == user_id)),
        await session.scalar(select(func.count()).select_from(Chat).where(Chat.id == user_id,
                                                                          Chat.kind == "private")),
        await session.scalar(select(func.count()).select_from(ChatSettings).where(ChatSettings.updated_by == user_id)),
    ]
    return sum(counts)


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
