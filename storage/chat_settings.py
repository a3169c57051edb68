"""Per-chat switches that group and channel admins flip with /settings."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from .context import ensure_chat
from .models import ChatSettings

SWITCHES = ("auto_caption", "alt_text")


@dataclass(frozen=True)
class Switches:
    auto_caption: bool = False  # groups: caption every photo, not only those the bot is asked about
    alt_text: bool = False  # channels: add a description to every photo post


async def chat_switches(session: AsyncSession, chat_id: int) -> Switches:
    row = await session.get(ChatSettings, chat_id)
    if row is None:
        return Switches()
    return Switches(auto_caption=bool(row.auto_caption), alt_text=bool(row.alt_text))


async def set_chat_switch(session: AsyncSession, chat_id: int, chat_kind: str, name: str, value: bool,
                          updated_by: int | None) -> Switches:
    """Turn one switch on or off for a chat; returns every switch as it now stands."""
    if name not in SWITCHES:
        raise ValueError(f"unknown setting {name!r}; known: {', '.join(SWITCHES)}")
    await ensure_chat(session, chat_id, chat_kind)
    row = await session.scalar(select(ChatSettings).where(ChatSettings.chat_id == chat_id).with_for_update())
    if row is None:
        row = ChatSettings(chat_id=chat_id, auto_caption=False, alt_text=False)
        session.add(row)
    setattr(row, name, value)
    row.updated_by = updated_by
    await session.flush()
    return Switches(auto_caption=bool(row.auto_caption), alt_text=bool(row.alt_text))
