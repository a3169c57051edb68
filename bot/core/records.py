"""What the bot keeps, and letting go of it: /reset, /forget, chat switches, a group's upgrade, statistics
and upkeep."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from clipchat.i18n import N_, choose, translator
from storage import (
    Moved,
    Removed,
    chat_switches,
    forget_user,
    maintain,
    move_chat,
    purge_older_than,
    purge_usage_before,
    reset_thread,
    set_chat_switch,
    statistics,
    write_with_retry,
)
from storage import Switches as Switches  # re-exported: what switches() returns, for the adapter to read

from .incoming import Where
from .services import Services

log = logging.getLogger(__name__)
ONLY_OPERATORS = N_("Only the bot's operators can see statistics.")


async def reset(services: Services, where: Where) -> int:
    """Clear this user's conversation in this chat; returns the turns removed."""
    return await write_with_retry(
        services.sessions, lambda session: reset_thread(session, where.chat_id, where.thread_user)
    )


async def forget(services: Services, user_id: int) -> Removed:
    removed = await write_with_retry(services.sessions, lambda session: forget_user(session, user_id))
    await services.models.forget_caches()  # their search phrases and /tags labels, among everyone's
    return removed


async def switches(services: Services, chat_id: int) -> Switches:
    async with services.reading() as session:
        return await chat_switches(session, chat_id)


async def language(services: Services, where: Where) -> str:
    """The language replies here are written in: the chat's /settings language, else the sender's, else English."""
    return choose((await switches(services, where.chat_id)).language, where.language)


async def set_switch(services: Services, where: Where, name: str, value: bool | int | str | None) -> Switches:
    return await write_with_retry(
        services.sessions,
        lambda session: set_chat_switch(session, where.chat_id, where.chat_kind, name, value, where.user_id),
    )


async def chat_upgraded(services: Services, old_id: int, new_id: int) -> Moved:
    """A group became a supergroup, which Telegram gives a new id: its settings, photos, conversations,
    budgets and bans follow it there, in one transaction. Both chats announce the upgrade, in either order
    and maybe to two processes; whichever comes second finds nothing left to move."""
    moved = await write_with_retry(services.sessions, lambda session: move_chat(session, old_id, new_id))
    services.access.changed(old_id, None)  # the old id holds no operator's word now, whoever moved it
    if moved.access is not None:
        services.access.changed(new_id, moved.access)
    if moved.anything:
        log.info(
            "group %s became supergroup %s: moved %d photos, %d turns, %s, %d usage counts, access %s",
            old_id,
            new_id,
            moved.images,
            moved.turns,
            "its settings" if moved.settings else "no settings",
            moved.usage,
            moved.access or "unchanged",
        )
    return moved


async def statistics_for(services: Services, user_id: int | None, language: str | None = None) -> str:
    """Row counts, for operators only."""
    if user_id is None or user_id not in services.settings.admin_ids:
        return translator(language)(ONLY_OPERATORS)
    async with services.reading() as session:
        counts = await statistics(session)
    return "\n".join(f"{name}: {value}" for name, value in counts.items())


async def purge_expired(services: Services) -> tuple[int, Removed]:
    """Delete turns and photo records older than the retention period; returns (days, what went)."""
    age = timedelta(days=services.storage_settings.retention_days)
    yesterday = datetime.now(UTC).date() - timedelta(days=1)

    async def work(session: AsyncSession) -> Removed:
        await purge_usage_before(session, yesterday)  # budgets are daily; a day's grace for clocks in other zones
        return await purge_older_than(session, age)

    return age.days, await write_with_retry(services.sessions, work)


async def upkeep(services: Services) -> str:
    """Refresh planner statistics and trim the SQLite log; returns a line saying what the bot holds."""
    done = await maintain(services.database)
    async with services.reading() as session:
        counts = await statistics(session)
    return f"database maintenance ({done}); rows {counts}; model queues {services.models.queue_depths()}"
