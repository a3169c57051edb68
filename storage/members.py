"""Who the bot has seen in each group, and since when: /search there shows each person only the photos
posted since the bot first saw them, as a group that hides its history from new members does.

The bot cannot ask Telegram when someone joined, nor whether a group hides its history, so it keeps
the first time it saw each person write in each group (or join it), and treats every group as hiding.
Only a person's first message in a group writes: `MembersSeen` remembers the pairs this process has
already written.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from .database import changed_rows
from .models import ChatMember, as_utc, utcnow


async def see_members(session: AsyncSession, chat_id: int, user_ids: Iterable[int], joined: bool = False) -> None:
    """Note that these people are in the group from now on, unless the bot saw them there before; with
    `joined`, they have just joined it, and now is when they came (whatever was kept from an earlier stay)."""
    dialect = {"sqlite": sqlite, "postgresql": postgresql}[session.get_bind().dialect.name]
    now = utcnow()
    for user_id in dict.fromkeys(user_ids):
        statement = dialect.insert(ChatMember).values(chat_id=chat_id, user_id=user_id, first_seen=now)
        if joined:
            await session.execute(
                statement.on_conflict_do_update(index_elements=["chat_id", "user_id"], set_={"first_seen": now})
            )
        else:
            await session.execute(statement.on_conflict_do_nothing())


async def member_since(session: AsyncSession, chat_id: int, user_id: int) -> datetime | None:
    """When the bot first saw this person in this group (in UTC), or None if it never did."""
    seen = await session.scalar(
        select(ChatMember.first_seen).where(ChatMember.chat_id == chat_id, ChatMember.user_id == user_id)
    )
    return as_utc(seen) if seen is not None else None


async def member_left(session: AsyncSession, chat_id: int, user_id: int) -> bool:
    """Forget when this person came: they left the group, and should they come back, they come anew."""
    removed = await session.execute(
        delete(ChatMember).where(ChatMember.chat_id == chat_id, ChatMember.user_id == user_id)
    )
    return changed_rows(removed) > 0


class MembersSeen:
    """The (group, person) pairs this process has written to chat_members, so that only someone's first
    message in a group costs a write. Bounded: past `most` pairs the longest unseen are let go, and
    written again (harmlessly: the first time stays) when they next write."""

    def __init__(self, most: int = 100_000) -> None:
        self._seen: OrderedDict[tuple[int, int], None] = OrderedDict()
        self._most = most

    def unseen(self, chat_id: int, user_ids: Iterable[int]) -> list[int]:
        """Of these people, those not yet written as seen in this group."""
        fresh = []
        for user_id in user_ids:
            key = (chat_id, user_id)
            if key in self._seen:
                self._seen.move_to_end(key)
            elif user_id not in fresh:
                fresh.append(user_id)
        return fresh

    def saw(self, chat_id: int, user_ids: Iterable[int]) -> None:
        for user_id in user_ids:
            self._seen[(chat_id, user_id)] = None
            self._seen.move_to_end((chat_id, user_id))
        while len(self._seen) > self._most:
            self._seen.popitem(last=False)

    def left(self, chat_id: int, user_id: int) -> None:
        self._seen.pop((chat_id, user_id), None)

    def forget_user(self, user_id: int) -> None:
        """/forget deleted their rows: their next message in any group writes again."""
        for key in [key for key in self._seen if key[1] == user_id]:
            del self._seen[key]
