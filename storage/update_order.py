"""Each user's updates in Telegram's order across several bot processes on one database.

Behind a load balancer, a user's consecutive updates can reach different processes
at once. Every process records what it received in `pending_updates`; an update
runs only when it is the oldest its user has pending, and leaves when done, so the
next one (in whichever process) follows. On PostgreSQL the check runs under
`pg_advisory_xact_lock(user)`, so two processes never decide at the same moment.

The same table bounds each user's queue across processes: `arrived` says how many
updates the user has pending everywhere, and the bot drops what exceeds its limit.

Deliveries can cross on the way in: an update waits `reorder_window` seconds
before its first check, so one that was sent earlier but arrived a little later
still goes first.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from .context import _insert_if_missing
from .database import write_with_retry
from .models import PendingUpdate


class SharedOrder:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        reorder_window: float = 0.3,
        poll: float = 0.05,
        stale_after: float = 300.0,
    ) -> None:
        self.sessions = sessions
        self.reorder_window = reorder_window
        self.poll = poll
        self.stale_after = timedelta(seconds=stale_after)  # a crashed process's updates stop blocking after this

    async def arrived(self, key: int, update_id: int) -> int:
        """Record the update; returns how many this user now has pending across all processes."""

        async def work(session: AsyncSession) -> int:
            await _insert_if_missing(
                session, PendingUpdate, user_key=key, update_id=update_id, arrived_at=datetime.now(UTC)
            )
            pending = await session.scalar(
                select(func.count()).select_from(PendingUpdate).where(PendingUpdate.user_key == key)
            )
            return pending or 0

        return await write_with_retry(self.sessions, work)

    async def wait_turn(self, key: int, update_id: int) -> None:
        """Return when no update older than `update_id` is pending for its user anywhere.

        Not "when it is the oldest": an update slower than `stale_after` has its own row removed
        as stale by the others, and must not then wait for it for ever."""
        await asyncio.sleep(self.reorder_window)
        while True:
            oldest = await write_with_retry(self.sessions, lambda session: self._oldest(session, key))
            if oldest is None or oldest >= update_id:
                return
            await asyncio.sleep(self.poll)

    async def done(self, key: int, update_id: int) -> None:
        await write_with_retry(
            self.sessions,
            lambda session: session.execute(
                delete(PendingUpdate).where(PendingUpdate.user_key == key, PendingUpdate.update_id == update_id)
            ),
        )

    async def _oldest(self, session: AsyncSession, key: int) -> int | None:
        if session.get_bind().dialect.name == "postgresql":
            await session.execute(select(func.pg_advisory_xact_lock(key)))
        cutoff = datetime.now(UTC) - self.stale_after
        await session.execute(
            delete(PendingUpdate).where(PendingUpdate.user_key == key, PendingUpdate.arrived_at < cutoff)
        )
        return await session.scalar(select(func.min(PendingUpdate.update_id)).where(PendingUpdate.user_key == key))
