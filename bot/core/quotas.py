"""Daily budgets and the operators' allow/ban list: one community member cannot use up the models.

Each photo the models look at, and each question they answer, is counted for its sender and,
in a group or channel, for the chat, before any model runs. Over budget, the sender is told once
a day when the budget comes back; later attempts that day are dropped without a word, so a
flood of photos cannot become a flood of refusals. Operators are never counted.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum

from sqlalchemy.ext.asyncio import AsyncSession

from clipchat.errors import StorageDown, UserError
from clipchat.i18n import N_
from clipchat.kinds import ChatKind
from storage import (
    AccessStatus,
    Switches,
    UsageKind,
    UsageScope,
    access_of,
    busiest,
    chat_switches,
    first_to_tell,
    set_access,
    usage_on,
    use,
    write_with_retry,
)

from .incoming import Where
from .services import Services

log = logging.getLogger(__name__)
GROUP_KINDS = (ChatKind.GROUP, ChatKind.SUPERGROUP, ChatKind.CHANNEL)
# One message per kind and scope, so that each language can word "photos" and "questions" its own way.
OVER = {
    (UsageScope.USER, UsageKind.PHOTOS): N_(
        "You've used your daily budget of photos ({limit}). It comes back at midnight UTC, in "
        "{hours} h {minutes} min; until then I'll stay quiet about photos."
    ),
    (UsageScope.USER, UsageKind.QUESTIONS): N_(
        "You've used your daily budget of questions ({limit}). It comes back at midnight UTC, "
        "in {hours} h {minutes} min; until then I'll stay quiet about questions."
    ),
    (UsageScope.CHAT, UsageKind.PHOTOS): N_(
        "This chat has used its daily budget of photos ({limit}). It comes back at midnight UTC, "
        "in {hours} h {minutes} min; until then I'll stay quiet about photos here."
    ),
    (UsageScope.CHAT, UsageKind.QUESTIONS): N_(
        "This chat has used its daily budget of questions ({limit}). It comes back at "
        "midnight UTC, in {hours} h {minutes} min; until then I'll stay quiet about questions "
        "here."
    ),
}


class Verdict(StrEnum):
    """Whether the bot serves a sender (`access`)."""

    SERVED = "served"
    BANNED = "banned"  # ignored without a word
    OUTSIDE = "outside"  # outside the allow-lists: told so in private


class OverBudget(UserError):
    """Over a daily budget. The first refusal of the day says when it comes back; later ones say nothing
    (an empty user_message: the error handler sends no reply)."""


@dataclass(frozen=True)
class Budgets:
    """The day's budgets that apply to one sender in one chat (None: no limit)."""

    user: int | None
    chat: int | None


def today(now: datetime | None = None) -> date:
    return (now or datetime.now(UTC)).date()


def until_midnight(now: datetime | None = None) -> tuple[int, int]:
    """(hours, minutes) until the budgets come back, at midnight UTC."""
    now = now or datetime.now(UTC)
    midnight = datetime.combine(now.date() + timedelta(days=1), time(0), tzinfo=UTC)
    return divmod(max(1, int((midnight - now).total_seconds() // 60)), 60)


def _limit(value: int | None) -> int | None:
    return value if value else None  # 0 in the settings: no limit


async def budgets(services: Services, where: Where, kind: UsageKind, switches: Switches | None = None) -> Budgets:
    """The user's and the chat's budgets for `kind` here: the chat's own, where operators set one
    (`switches`: the chat's settings, when the caller has read them already)."""
    settings = services.settings
    if switches is None:
        async with services.reading() as session:
            switches = await chat_switches(session, where.chat_id)
    photos = kind == UsageKind.PHOTOS
    override = switches.daily_photos if photos else switches.daily_questions
    user = settings.daily_photos_per_user if photos else settings.daily_questions_per_user
    chat = settings.daily_photos_per_group if photos else settings.daily_questions_per_group
    if where.chat_kind in GROUP_KINDS:
        return Budgets(user=_limit(user), chat=_limit(chat if override is None else override))
    return Budgets(user=_limit(user if override is None else override), chat=None)  # private: the chat is the user


async def spend(
    services: Services, where: Where, kind: UsageKind, *, speak: bool = True, switches: Switches | None = None
) -> None:
    """Count one use of the models; raises OverBudget (said once a day, when `speak`) when it is one too many."""
    if where.user_id is not None and where.user_id in services.settings.admin_ids:
        return
    limits = await budgets(services, where, kind, switches)
    subjects = [
        (scope, subject, limit)
        for scope, subject, limit in (
            (UsageScope.USER, where.user_id, limits.user),
            (UsageScope.CHAT, where.chat_id, limits.chat),
        )
        if subject is not None and limit is not None
    ]
    if not subjects:
        return
    day = today()

    async def count(session: AsyncSession) -> tuple[UsageScope, int, int, bool] | None:
        for scope, subject, limit in subjects:
            if await use(session, scope, subject, day, kind) > limit:
                return scope, subject, limit, speak and await first_to_tell(session, scope, subject, day, kind)
        return None

    over = await write_with_retry(services.sessions, count)
    if over is None:
        return
    scope, subject, limit, tell = over
    log.info("%s %s over its daily budget of %d %s%s", scope, subject, limit, kind, "" if tell else " (quiet)")
    detail = f"{scope} {subject} over {limit} {kind} today"
    if not tell:
        raise OverBudget("", detail=detail)
    hours, minutes = until_midnight()
    raise OverBudget(OVER[scope, kind], detail=detail, params={"limit": limit, "hours": hours, "minutes": minutes})


async def access(
    services: Services, user_id: int | None, chat_id: int | None, sender_chat_id: int | None = None
) -> Verdict:
    """Served, banned (ignored without a word) or outside the allow-lists (told so in private).

    Operators are always served; then an operator's /ban or /allow decides, and it applies to every
    identity the update carries: the person (`user_id`), the chat they write as (`sender_chat_id`: a
    channel, or an anonymous admin's own group) and the chat it is in, so banning a group or channel
    silences everyone there, its anonymous admins and its own posts included. A ban of any of them
    beats an allowance of another. Then the settings' allow-lists. With the database down, the
    allow-lists alone decide (bans wait for it)."""
    settings = services.settings
    if user_id is not None and user_id in settings.admin_ids:
        return Verdict.SERVED
    identities = list(dict.fromkeys(i for i in (user_id, sender_chat_id, chat_id) if i is not None))
    try:
        said = set(await services.access.status_of(services.sessions, identities))
    except StorageDown as error:
        log.warning("database unavailable: allow-lists alone decide for user %s: %s", user_id, error)
        said = set()
    if AccessStatus.BANNED in said:
        return Verdict.BANNED
    if AccessStatus.ALLOWED in said:
        return Verdict.SERVED
    return Verdict.SERVED if settings.allows(user_id, chat_id) else Verdict.OUTSIDE


async def set_user_access(services: Services, user_id: int, status: AccessStatus | None, operator: int | None) -> None:
    """An operator's word on a user, or on a group or channel (a negative id): see `access`."""
    await write_with_retry(services.sessions, lambda session: set_access(session, user_id, status, operator))
    services.access.changed(user_id, status)


@dataclass(frozen=True)
class UsageReport:
    status: AccessStatus | None  # for a user: what an operator said, if anything; None for a chat
    used: dict[UsageKind, int]  # count today
    limits: dict[UsageKind, int | None]  # today's budget (None: no limit)


async def usage_of(
    services: Services, scope: UsageScope, subject_id: int, chat_kind: ChatKind = ChatKind.PRIVATE
) -> UsageReport:
    """One user's (or chat's) use today, their budgets and what operators said about them."""
    async with services.reading() as session:
        used = await usage_on(session, scope, subject_id, today())
        status = await access_of(session, subject_id) if scope == UsageScope.USER else None
    where = Where(subject_id, chat_kind, subject_id if scope == UsageScope.USER else None)
    limits: dict[UsageKind, int | None] = {}
    for kind in used:
        budget = await budgets(services, where, kind)
        limits[kind] = budget.user if scope == UsageScope.USER else budget.chat
    return UsageReport(status, used, limits)


async def heaviest(services: Services, scope: UsageScope, limit: int = 10) -> list[tuple[int, UsageKind, int]]:
    async with services.reading() as session:
        return await busiest(session, scope, today(), limit)
