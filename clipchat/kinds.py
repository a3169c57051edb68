"""Values that cross layers: who said a turn, what kind of chat, what kind of file, how answers fall back.

Each is a `StrEnum`, so a value is also the exact string Telegram sends and the database stores:
`ChatKind("private") == "private"`, and an unknown string raises ValueError instead of passing through.
"""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    """Who said a turn of a conversation (the `turns.role` column, and chat templates' roles)."""

    USER = "user"
    ASSISTANT = "assistant"


class ChatKind(StrEnum):
    """Telegram's chat types (the `chats.kind` column)."""

    PRIVATE = "private"
    GROUP = "group"
    SUPERGROUP = "supergroup"
    CHANNEL = "channel"


class MediaKind(StrEnum):
    """How a photo arrived (the `images.media_kind` column): as a photo, or as an image file; it is sent back the
    same way."""

    PHOTO = "photo"
    DOCUMENT = "document"


class AnswerFallback(StrEnum):
    """How open questions are answered while the model server that answers them cannot
    (`CLIPCHAT_ANSWER_FALLBACK`)."""

    DESCRIBE = "describe"  # one line saying so, then the photo's caption and tags; CLIP's routes still answer
    LOCAL = "local"  # the in-process answer model, loaded on the first fallback (its memory, and minutes)


__all__ = ["AnswerFallback", "ChatKind", "MediaKind", "Role"]
