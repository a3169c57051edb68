"""A group upgraded to a supergroup: Telegram gives it a new id, and what was kept under the old one moves.

Both chats announce the upgrade (the old group's last message carries `migrate_to_chat_id`, the
supergroup's first `migrate_from_chat_id`), in either order and possibly to two processes, so
`move_chat` is one transaction that any number of callers may run: each step moves only what still
carries the old id, the first caller moves everything and the others find nothing left. Counts are
taken out of the old rows with DELETE ... RETURNING before they are added to the new ones, so two
movers at once never add a count twice.

The old id is also an identity: anonymous admins write as their group, and the bot keys their
conversations, photos, budgets and bans by the group's id. After the upgrade they write as the
supergroup, so that identity moves too.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from sqlalchemy import case, delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from clipchat.kinds import ChatKind

from .chat_settings import Switches
from .context import ensure_chat, ensure_user
from .database import changed_rows
from .models import (
    AccessStatus,
    Chat,
    ChatMember,
    ChatSettings,
    ImageRecord,
    SentPhoto,
    Turn,
    Usage,
    User,
    UserAccess,
)

# Every table, and what a move does with it; a new table must be added here (a storage test checks).
CHAT_ROWS = {
    "chats": "the supergroup's row is made, the group's deleted once its rows have moved",
    "chat_settings": "moved; a setting the supergroup already changed keeps its value",
    "images": "moved, and re-attributed where the group's anonymous admins sent them",
    "turns": "moved, and the anonymous admins' conversations re-keyed",
    "sent_photos": "moved; their message ids are the old group's, which replies in the supergroup never name",
    "users": "the anonymous admins' identity (the group's id) becomes the supergroup's",
    "usage": "today's counts of the chat and of its anonymous admins, added to the supergroup's",
    "user_access": "an operator's word on the group holds for the supergroup, unless they said one about it",
    "pending_updates": "stays: the rows of updates in flight, which remove their own",
    "reindex_runs": "stays: a re-index at work keeps the chat it was started for",
    "chat_members": "moved, the anonymous admins' identity too; whoever the supergroup saw first keeps the earlier time",
    "forgotten": "stays: a forgotten group identity is forgotten under the id its rows had then, as a "
    "backup from before the upgrade holds them",
}


@dataclass(frozen=True)
class Moved:
    """What one call moved (all zero for a move already done)."""

    images: int = 0
    turns: int = 0
    settings: bool = False
    usage: int = 0  # counts (rows) added to the supergroup's
    access: AccessStatus | None = None  # the operator's word that now holds for the supergroup, if one moved
    members: int = 0  # people seen in the group, and since when

    @property
    def anything(self) -> bool:
        return bool(self.images or self.turns or self.settings or self.usage or self.access or self.members)


async def move_chat(session: AsyncSession, old_id: int, new_id: int, new_kind: ChatKind = ChatKind.SUPERGROUP) -> Moved:
    """Move everything kept under chat `old_id` to `new_id`, in the caller's transaction; idempotent."""
    if old_id == new_id:
        return Moved()
    # On PostgreSQL a second mover waits here until the first commits, then finds the row gone.
    chat = await session.scalar(select(Chat.id).where(Chat.id == old_id).with_for_update())
    identity = await session.scalar(select(User.id).where(User.id == old_id).with_for_update())
    if chat is not None:
        await ensure_chat(session, new_id, new_kind)
    if identity is not None:
        await ensure_user(session, new_id)
    moved_settings = await _move_settings(session, old_id, new_id) if chat is not None else False
    await session.execute(update(ChatSettings).where(ChatSettings.updated_by == old_id).values(updated_by=new_id))
    images = changed_rows(
        await session.execute(update(ImageRecord).where(ImageRecord.chat_id == old_id).values(chat_id=new_id))
    )
    turns = changed_rows(await session.execute(update(Turn).where(Turn.chat_id == old_id).values(chat_id=new_id)))
    await session.execute(update(SentPhoto).where(SentPhoto.chat_id == old_id).values(chat_id=new_id))
    if identity is not None:
        await session.execute(update(ImageRecord).where(ImageRecord.sender_id == old_id).values(sender_id=new_id))
        await session.execute(update(Turn).where(Turn.user_id == old_id).values(user_id=new_id))
        await session.execute(delete(User).where(User.id == old_id))
    if chat is not None:
        await session.execute(delete(Chat).where(Chat.id == old_id))  # its rows have moved: nothing cascades
    usage = await _move_usage(session, old_id, new_id)
    access = await _move_access(session, old_id, new_id)
    members = await _move_members(session, old_id, new_id)
    await session.flush()
    return Moved(images=images, turns=turns, settings=moved_settings, usage=usage, access=access, members=members)


async def _move_settings(session: AsyncSession, old_id: int, new_id: int) -> bool:
    old = await session.get(ChatSettings, old_id)
    if old is None:
        return False
    new = await session.get(ChatSettings, new_id)
    if new is None:  # the usual case: the supergroup has no settings of its own yet
        await session.execute(update(ChatSettings).where(ChatSettings.chat_id == old_id).values(chat_id=new_id))
        session.expunge(old)
        return True
    defaults = Switches()
    for name in (field.name for field in fields(Switches)):
        if getattr(new, name) == getattr(defaults, name):  # untouched in the supergroup: the group's value
            setattr(new, name, getattr(old, name))
    await session.delete(old)
    return True


async def _move_usage(session: AsyncSession, old_id: int, new_id: int) -> int:
    taken = (
        await session.execute(
            delete(Usage)
            .where(Usage.subject_id == old_id)
            .returning(Usage.scope, Usage.day, Usage.kind, Usage.count, Usage.told)
        )
    ).all()
    dialect = {"sqlite": sqlite, "postgresql": postgresql}[session.get_bind().dialect.name]
    for scope, day, kind, count, told in taken:
        statement = dialect.insert(Usage).values(
            scope=scope, subject_id=new_id, day=day, kind=kind, count=count, told=told
        )
        await session.execute(
            statement.on_conflict_do_update(
                index_elements=["scope", "subject_id", "day", "kind"],
                set_={"count": Usage.count + statement.excluded.count, "told": Usage.told | statement.excluded.told},
            )
        )
    return len(taken)


async def _move_access(session: AsyncSession, old_id: int, new_id: int) -> AccessStatus | None:
    taken = (
        await session.execute(
            delete(UserAccess)
            .where(UserAccess.user_id == old_id)
            .returning(UserAccess.status, UserAccess.updated_by, UserAccess.updated_at)
        )
    ).first()
    if taken is None:
        return None
    status, updated_by, updated_at = taken
    dialect = {"sqlite": sqlite, "postgresql": postgresql}[session.get_bind().dialect.name]
    statement = dialect.insert(UserAccess).values(
        user_id=new_id, status=status, updated_by=updated_by, updated_at=updated_at
    )
    kept = await session.execute(statement.on_conflict_do_nothing().returning(UserAccess.status))
    return status if kept.first() is not None else None


async def _move_members(session: AsyncSession, old_id: int, new_id: int) -> int:
    """The group's members, and its anonymous admins' identity wherever it was seen, with the time each was
    first seen; someone the supergroup saw before the move keeps the earlier of the two times."""
    taken = (
        await session.execute(
            delete(ChatMember)
            .where((ChatMember.chat_id == old_id) | (ChatMember.user_id == old_id))
            .returning(ChatMember.chat_id, ChatMember.user_id, ChatMember.first_seen)
        )
    ).all()
    dialect = {"sqlite": sqlite, "postgresql": postgresql}[session.get_bind().dialect.name]
    for chat_id, user_id, first_seen in taken:
        statement = dialect.insert(ChatMember).values(
            chat_id=new_id if chat_id == old_id else chat_id,
            user_id=new_id if user_id == old_id else user_id,
            first_seen=first_seen,
        )
        earlier = case(
            (statement.excluded.first_seen < ChatMember.first_seen, statement.excluded.first_seen),
            else_=ChatMember.first_seen,
        )
        await session.execute(
            statement.on_conflict_do_update(index_elements=["chat_id", "user_id"], set_={"first_seen": earlier})
        )
    return len(taken)
