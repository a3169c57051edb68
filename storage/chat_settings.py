"""Per-chat settings: the switches group and channel admins flip with /settings, the chat's language,
and the daily budgets operators give a chat."""

from __future__ import annotations

from dataclasses import dataclass, fields

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from clipchat.kinds import ChatKind

from .context import ensure_chat
from .models import ChatSettings


@dataclass(frozen=True)
class Switches:
    auto_caption: bool = False  # groups: caption every photo, not only those the bot is asked about
    alt_text: bool = False  # channels: add a description to every photo post
    index_photos: bool = True  # groups: keep photos nobody addressed, for /search
    language: str | None = None  # the replies' language here; None: each sender's Telegram language
    daily_photos: int | None = None  # operators' budget for this chat; None: the configured default
    daily_questions: int | None = None


SWITCHES = tuple(field.name for field in fields(Switches))


def _switches(row: ChatSettings | None) -> Switches:
    if row is None:
        return Switches()
    return Switches(
        auto_caption=bool(row.auto_caption),
        alt_text=bool(row.alt_text),
        index_photos=row.index_photos is not False,
        language=row.language,
        daily_photos=row.daily_photos,
        daily_questions=row.daily_questions,
    )


async def chat_switches(session: AsyncSession, chat_id: int) -> Switches:
    return _switches(await session.get(ChatSettings, chat_id))


async def set_chat_switch(
    session: AsyncSession,
    chat_id: int,
    chat_kind: ChatKind,
    name: str,
    value: bool | int | str | None,
    updated_by: int | None,
) -> Switches:
    """Change one setting of a chat; returns every setting as it now stands."""
    if name not in SWITCHES:
        raise ValueError(f"unknown setting {name!r}; known: {', '.join(SWITCHES)}")
    await ensure_chat(session, chat_id, chat_kind)
    row = await session.scalar(select(ChatSettings).where(ChatSettings.chat_id == chat_id).with_for_update())
    if row is None:
        defaults = Switches()
        row = ChatSettings(chat_id=chat_id, **{name: getattr(defaults, name) for name in SWITCHES})
        session.add(row)
    setattr(row, name, value)
    row.updated_by = updated_by
    await session.flush()
    return _switches(row)
