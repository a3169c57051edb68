"""Daily usage counts behind the budgets, and the operators' allow/ban list.

Both live in SQL so that every bot process serving one bot sees the same counts and the same
bans. A count is taken with one atomic upsert, so two processes never lose an increment.
"""

from __future__ import annotations

from datetime import date

from sqlalchemy import delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from .models import Usage, UserAccess, utcnow

ACCESS = ("allowed", "banned")
KINDS = ("photos", "questions")
SCOPES = ("user", "chat")


async def access_of(session: AsyncSession, user_id: int) -> str | None:
    """'allowed', 'banned', or None when no operator has said anything about this user."""
    return await session.scalar(select(UserAccess.status).where(UserAccess.user_id == user_id))


async def set_access(session: AsyncSession, user_id: int, status: str | None, updated_by: int | None) -> None:
    """Allow or ban a user; None takes the operator's word back (the settings' allow-lists apply again)."""
    if status is not None and status not in ACCESS:
        raise ValueError(f"unknown access {status!r}; known: {', '.join(ACCESS)}")
    await session.execute(delete(UserAccess).where(UserAccess.user_id == user_id))
    if status is not None:
        session.add(UserAccess(user_id=user_id, status=status, updated_by=updated_by, updated_at=utcnow()))
    await session.flush()


async def use(session: AsyncSession, scope: str, subject_id: int, day: date, kind: str) -> int:
    """Count one use; returns the day's count, this one included."""
    if scope not in SCOPES or kind not in KINDS:
        raise ValueError(f"unknown usage {scope}/{kind}")
    dialect = {"sqlite": sqlite, "postgresql": postgresql}[session.bind.dialect.name]
    statement = dialect.insert(Usage).values(scope=scope, subject_id=subject_id, day=day, kind=kind, count=1,
                                             told=False)
    statement = statement.on_conflict_do_update(index_elements=["scope", "subject_id", "day", "kind"],
                                                set_={"count": Usage.count + 1}).returning(Usage.count)
    return (await session.execute(statement)).scalar_one()


async def first_to_tell(session: AsyncSession, scope: str, subject_id: int, day: date, kind: str) -> bool:
    """Whether this caller is the first to tell about the exhausted budget (each is told once a day)."""
    told = await session.execute(update(Usage).where(
        Usage.scope == scope, Usage.subject_id == subject_id, Usage.day == day, Usage.kind == kind,
        Usage.told.is_(False)).values(told=True))
    return told.rowcount == 1


async def usage_on(session: AsyncSession, scope: str, subject_id: int, day: date) -> dict[str, int]:
    """The day's counts of one user or chat, by kind (0 for kinds not used)."""
    rows = await session.execute(select(Usage.kind, Usage.count).where(
        Usage.scope == scope, Usage.subject_id == subject_id, Usage.day == day))
    return {kind: 0 for kind in KINDS} | dict(rows.tuples().all())


async def busiest(session: AsyncSession, scope: str, day: date, limit: int = 10) -> list[tuple[int, str, int]]:
    """The day's heaviest users (or chats): (id, kind, count), most first."""
    rows = await session.execute(select(Usage.subject_id, Usage.kind, Usage.count).where(
        Usage.scope == scope, Usage.day == day).order_by(Usage.count.desc(), Usage.subject_id).limit(limit))
    return list(rows.tuples().all())


async def purge_usage_before(session: AsyncSession, day: date) -> int:
    """Forget the counts of days before `day` (budgets are daily: nothing reads them again)."""
    return (await session.execute(delete(Usage).where(Usage.day < day))).rowcount or 0
