"""Daily usage counts behind the budgets, and the operators' allow/ban list.

Both live in SQL so that every bot process serving one bot sees the same counts and the same
bans. A count is taken with one atomic upsert, so two processes never lose an increment.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from datetime import date

from sqlalchemy import delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from .database import changed_rows, reading
from .models import AccessStatus, Usage, UsageKind, UsageScope, UserAccess, utcnow

log = logging.getLogger(__name__)


async def access_of(session: AsyncSession, user_id: int) -> AccessStatus | None:
    """Allowed, banned, or None when no operator has said anything about this user."""
    return await session.scalar(select(UserAccess.status).where(UserAccess.user_id == user_id))


class AccessList:
    """The operators' allow/ban list, kept in memory and read whole from SQL again once it is `refresh_s` old.

    Every update is checked against it, and the check must not wait for the database: a sender's
    updates queue behind the one being checked, and a burst (two albums) would overflow their queue.
    So a stale list is still answered from, while one read in the background brings it up to date:
    a change made in this process applies at once, one made in another process within about
    `refresh_s`. Only the very first check reads inline (`refresh` at start-up avoids even that)."""

    def __init__(self, refresh_s: float = 5.0) -> None:
        self.refresh_s = refresh_s
        self._status: dict[int, AccessStatus] = {}
        self._read_at: float | None = None
        self._reading: asyncio.Task[None] | None = None

    async def refresh(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        async with reading(sessions) as session:
            rows = await session.execute(select(UserAccess.user_id, UserAccess.status))
        self._status = dict(rows.tuples().all())
        self._read_at = time.monotonic()

    async def status_of(
        self, sessions: async_sessionmaker[AsyncSession], identities: Iterable[int]
    ) -> list[AccessStatus | None]:
        """What operators said about each identity (allowed, banned, or None)."""
        if self._read_at is None:
            await self.refresh(sessions)
        elif time.monotonic() - self._read_at > self.refresh_s and (self._reading is None or self._reading.done()):
            self._reading = asyncio.create_task(self.refresh(sessions), name="access-list")
            self._reading.add_done_callback(_log_failure)
        return [self._status.get(identity) for identity in identities]

    def changed(self, user_id: int, status: AccessStatus | None) -> None:
        """This process wrote a change: apply it without waiting for the next read."""
        if status is None:
            self._status.pop(user_id, None)
        else:
            self._status[user_id] = status

    async def close(self) -> None:
        if self._reading is not None and not self._reading.done():
            self._reading.cancel()
            await asyncio.gather(self._reading, return_exceptions=True)


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:  # the old list stays; the next check tries again
        log.warning("could not read the operators' allow/ban list: %s", task.exception())


async def set_access(session: AsyncSession, user_id: int, status: AccessStatus | None, updated_by: int | None) -> None:
    """Allow or ban a user; None takes the operator's word back (the settings' allow-lists apply again).
    Raises ValueError for a status that is none of AccessStatus's."""
    if status is not None:
        status = AccessStatus(status)
    await session.execute(delete(UserAccess).where(UserAccess.user_id == user_id))
    if status is not None:
        session.add(UserAccess(user_id=user_id, status=status, updated_by=updated_by, updated_at=utcnow()))
    await session.flush()


async def use(session: AsyncSession, scope: UsageScope, subject_id: int, day: date, kind: UsageKind) -> int:
    """Count one use; returns the day's count, this one included. Raises ValueError for an unknown scope or kind."""
    scope, kind = UsageScope(scope), UsageKind(kind)
    dialect = {"sqlite": sqlite, "postgresql": postgresql}[session.get_bind().dialect.name]
    statement = dialect.insert(Usage).values(
        scope=scope, subject_id=subject_id, day=day, kind=kind, count=1, told=False
    )
    statement = statement.on_conflict_do_update(
        index_elements=["scope", "subject_id", "day", "kind"], set_={"count": Usage.count + 1}
    ).returning(Usage.count)
    count: int = (await session.execute(statement)).scalar_one()
    return count


async def first_to_tell(session: AsyncSession, scope: UsageScope, subject_id: int, day: date, kind: UsageKind) -> bool:
    """Whether this caller is the first to tell about the exhausted budget (each is told once a day)."""
    told = await session.execute(
        update(Usage)
        .where(
            Usage.scope == scope,
            Usage.subject_id == subject_id,
            Usage.day == day,
            Usage.kind == kind,
            Usage.told.is_(False),
        )
        .values(told=True)
    )
    return changed_rows(told) == 1


async def usage_on(session: AsyncSession, scope: UsageScope, subject_id: int, day: date) -> dict[UsageKind, int]:
    """The day's counts of one user or chat, by kind (0 for kinds not used)."""
    rows = await session.execute(
        select(Usage.kind, Usage.count).where(Usage.scope == scope, Usage.subject_id == subject_id, Usage.day == day)
    )
    return {kind: 0 for kind in UsageKind} | dict(rows.tuples().all())


async def busiest(
    session: AsyncSession, scope: UsageScope, day: date, limit: int = 10
) -> list[tuple[int, UsageKind, int]]:
    """The day's heaviest users (or chats): (id, kind, count), most first."""
    rows = await session.execute(
        select(Usage.subject_id, Usage.kind, Usage.count)
        .where(Usage.scope == scope, Usage.day == day)
        .order_by(Usage.count.desc(), Usage.subject_id)
        .limit(limit)
    )
    return list(rows.tuples().all())


async def purge_usage_before(session: AsyncSession, day: date) -> int:
    """Forget the counts of days before `day` (budgets are daily: nothing reads them again)."""
    return changed_rows(await session.execute(delete(Usage).where(Usage.day < day)))
