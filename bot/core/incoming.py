"""What arrived, and where to answer: plain data the adapter fills in, and the port the core replies through."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Protocol

from clipchat.kinds import ChatKind, MediaKind

from .text import Said


@dataclass(frozen=True)
class Where:
    chat_id: int
    chat_kind: ChatKind
    user_id: int | None  # None for channel posts
    language: str | None = None  # the sender's Telegram language_code ("ru", "zh-hans"); None: not known
    # The forum topic it came from (Telegram's message_thread_id); 0: none, a chat without topics or a forum's
    # General. Each topic keeps its own conversations: the photo under discussion, the turns, /reset.
    topic: int = 0

    @property
    def thread_user(self) -> int:
        """Whose conversation this is: the person, or the chat they write as. Only a channel's own post has
        no one, and the bot keeps no conversation with a channel."""
        if self.user_id is None:
            raise ValueError(f"chat {self.chat_id}: a channel's own post has no conversation")
        return self.user_id


@dataclass(frozen=True)
class PhotoFile:
    message_id: int
    file_id: str
    file_unique_id: str
    media_kind: MediaKind = MediaKind.PHOTO
    media_group_id: str | None = None
    size: int | None = None  # bytes, as Telegram declares them (its file_size); None: not declared
    spoiler: bool = False  # posted behind a spoiler: whatever shows it again hides it the same way


@dataclass(frozen=True)
class PhotoMessage:
    where: Where
    photo: PhotoFile
    text: str  # the sender's words with the bot's @name taken out
    addressed: bool  # private, or the bot was mentioned or replied to


class Chat(Protocol):
    """The conversation the core answers in: a Telegram chat, or the terminal of `clipchat chat`."""

    async def fetch(self, photo: PhotoFile) -> bytes:
        """The photo's bytes; raises BadImage when it is too big to fetch."""

    def working(self, action: str = "typing") -> AbstractAsyncContextManager[None]:
        """Shows that the bot is busy on this chat's behalf while the block runs."""

    async def reply(self, text: str | Said) -> int | None:
        """Sends `text` in answer, what it hides behind spoilers; returns the message id of the reply, if it has
        one."""

    async def draft(self, text: Said) -> bool:
        """Shows `text` as the reply being written (a private chat's draft), until `reply` sends the reply; each
        call replaces the last. A draft that could not be shown is let go: it never costs the reply. False: no
        more drafts of this reply (they fail, or cannot be shown here)."""


class Channel(Chat, Protocol):
    async def edit_caption(self, caption: Said) -> None:
        """Replaces the post's caption, keeping the author's formatting; what `caption` hides goes behind
        spoilers."""
