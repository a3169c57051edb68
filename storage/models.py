"""The tables: users, chats, their settings, image records and conversation turns.

An image record keeps what the bot needs to talk about a photo later, never the
pixels: Telegram's file ids, who sent it where, caption, tags, and the CLIP
vector (float16 bytes) with the identity of the model that made it.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Any

import numpy as np
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Enum,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    false,
    true,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from clipchat.facts import PhotoFacts, Tag
from clipchat.kinds import ChatKind, MediaKind, Role


class AccessStatus(StrEnum):
    """An operator's word on a user (`user_access.status`)."""

    ALLOWED = "allowed"  # past the allow-lists
    BANNED = "banned"


class UsageScope(StrEnum):
    """Whose daily budget a count is (`usage.scope`)."""

    USER = "user"
    CHAT = "chat"


class UsageKind(StrEnum):
    """What a daily budget counts (`usage.kind`)."""

    PHOTOS = "photos"
    QUESTIONS = "questions"


def as_string(kind: type[StrEnum], length: int) -> Enum:
    """A StrEnum column stored as the plain string it always was (VARCHAR, no CHECK, no native type, so no
    migration), and read back as the enum; an unknown value is refused before it is written."""
    return Enum(
        kind,
        native_enum=False,
        create_constraint=False,
        length=length,
        validate_strings=True,
        values_callable=lambda members: [member.value for member in members],
    )


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(moment: datetime) -> datetime:
    """A stored time as an aware UTC datetime: SQLite hands them back without their zone."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def encode_embedding(vector: np.ndarray) -> bytes:
    """float16 bytes: half the size of float32, and cosine rankings stay the same to 3 decimals."""
    return np.asarray(vector, dtype=np.float16).tobytes()


def decode_embeddings(blobs: list[bytes]) -> np.ndarray:
    """(N, D) float32 from float16 bytes."""
    if not blobs:
        return np.zeros((0, 0), dtype=np.float32)
    return np.frombuffer(b"".join(blobs), dtype=np.float16).reshape(len(blobs), -1).astype(np.float32)


def encode_tags(tags: tuple[Tag, ...]) -> list[dict[str, Any]]:
    return [
        {"label": tag.label, "score": round(tag.score, 4)} | ({"section": tag.section} if tag.section else {})
        for tag in tags
    ]


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)  # Telegram user id
    first_seen: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Chat(Base):
    __tablename__ = "chats"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)  # Telegram chat id
    kind: Mapped[ChatKind] = mapped_column(as_string(ChatKind, 16))
    first_seen: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ChatSettings(Base):
    __tablename__ = "chat_settings"

    chat_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("chats.id", ondelete="CASCADE"), primary_key=True)
    auto_caption: Mapped[bool] = mapped_column(Boolean, default=False)  # groups: caption every photo
    alt_text: Mapped[bool] = mapped_column(Boolean, default=False)  # channels: add alt text to photo posts
    # groups: keep photos nobody addressed (captioned, for /search); off: they are neither looked at nor kept
    index_photos: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    language: Mapped[str | None] = mapped_column(String(16))  # replies' language; None: each sender's own
    # The operators' daily budgets for this chat, replacing the settings' (None: the settings' default)
    daily_photos: Mapped[int | None] = mapped_column(Integer)
    daily_questions: Mapped[int | None] = mapped_column(Integer)
    updated_by: Mapped[int | None] = mapped_column(BigInteger)


class ImageRecord(Base):
    __tablename__ = "images"
    __table_args__ = (
        Index("ix_images_chat_model_id", "chat_id", "embedding_model", "id"),
        Index("ix_images_chat_message", "chat_id", "message_id"),
        Index("ix_images_chat_sender_id", "chat_id", "sender_id", "topic_id", "id"),
        {"sqlite_autoincrement": True},  # never reuse an id: see migration 0004
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    chat_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("chats.id", ondelete="CASCADE"))
    # Every foreign key leads an index: a /forget deletes by it (see 0011)
    sender_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("users.id", ondelete="CASCADE"), index=True)
    message_id: Mapped[int] = mapped_column(BigInteger)
    topic_id: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")  # see Turn.topic_id
    media_group_id: Mapped[str | None] = mapped_column(String(64))
    file_id: Mapped[str] = mapped_column(String(256))
    file_unique_id: Mapped[str] = mapped_column(String(64), index=True)
    media_kind: Mapped[MediaKind] = mapped_column(
        as_string(MediaKind, 16), default=MediaKind.PHOTO, server_default=MediaKind.PHOTO.value
    )
    caption: Mapped[str] = mapped_column(Text, default="")
    tags: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)  # [{"label": str, "score": float}, ...]
    embedding: Mapped[bytes] = mapped_column(LargeBinary)  # float16, L2-normalised
    embedding_model: Mapped[str] = mapped_column(String(200))  # vectors of different models never meet
    # Telegram no longer had the file when `clipchat db reindex` asked for it: it cannot be re-embedded
    # (nor sent back), so reindexing skips it and /search does not count it as waiting.
    file_gone: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # Posted behind a spoiler (Telegram's has_media_spoiler): /search sends it back hidden the same way.
    spoiler: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)

    def facts(self) -> PhotoFacts:
        """What the models saw in this photo, as they first reported it."""
        return PhotoFacts(
            caption=self.caption,
            tags=tuple(Tag(**tag) for tag in self.tags),
            embedding=decode_embeddings([self.embedding])[0],
            model=self.embedding_model,
        )


class ChatMember(Base):
    """When the bot first saw someone in a group: /search there shows them only photos posted since, as a
    group that hides its history from new members does (the bot cannot tell which groups do)."""

    __tablename__ = "chat_members"
    __table_args__ = (Index("ix_chat_members_user", "user_id"),)

    chat_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    user_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)  # or a sender chat
    first_seen: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Turn(Base):
    __tablename__ = "turns"
    __table_args__ = (
        Index("ix_turns_thread", "chat_id", "user_id", "topic_id", "id"),
        Index("ix_turns_chat_message", "chat_id", "message_id"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    chat_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("chats.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("users.id", ondelete="CASCADE"), index=True)
    # The forum topic it was said in (Telegram's message_thread_id); 0: none, a chat without topics or a
    # forum's General. A conversation is (chat, topic, user): each topic of a forum is a room of its own.
    topic_id: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    role: Mapped[Role] = mapped_column(as_string(Role, 16))
    text: Mapped[str] = mapped_column(Text)
    image_id: Mapped[int | None] = mapped_column(ForeignKey("images.id", ondelete="SET NULL"), index=True)
    message_id: Mapped[int | None] = mapped_column(BigInteger)  # the bot's reply, so replies to it find the photo
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)


class SentPhoto(Base):
    """A photo the bot sent into a chat (a /search result): the message that shows it, so that a reply to
    that message is about that photo."""

    __tablename__ = "sent_photos"
    __table_args__ = (Index("ix_sent_photos_chat_message", "chat_id", "message_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    chat_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("chats.id", ondelete="CASCADE"))
    message_id: Mapped[int] = mapped_column(BigInteger)  # the bot's message, in that chat
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), index=True)
    sent_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)


class PendingUpdate(Base):
    """An update some bot process has received and not finished: the per-user queue shared by processes."""

    __tablename__ = "pending_updates"

    user_key: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)  # user, or channel
    update_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)  # Telegram's order
    arrived_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class UserAccess(Base):
    """An operator's word on one user, from the bot's /allow and /ban: every bot process reads it."""

    __tablename__ = "user_access"

    user_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)  # or a sender chat
    status: Mapped[AccessStatus] = mapped_column(as_string(AccessStatus, 8))
    updated_by: Mapped[int | None] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Usage(Base):
    """What one user, or one group, used of the models on one (UTC) day: the daily budgets count here."""

    __tablename__ = "usage"

    scope: Mapped[UsageScope] = mapped_column(as_string(UsageScope, 8), primary_key=True)
    subject_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    kind: Mapped[UsageKind] = mapped_column(as_string(UsageKind, 16), primary_key=True)
    count: Mapped[int] = mapped_column(Integer, default=0)  # asked for, refused ones included
    told: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())  # over-budget note sent


class ReindexRun(Base):
    """A `clipchat db reindex` at work, while it works: its row goes when it ends, and a crashed run's
    heartbeat goes stale. Bot processes read it to tell people their older photos are on their way."""

    __tablename__ = "reindex_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    embedding_model: Mapped[str] = mapped_column(String(200))  # the CLIP the photos are re-embedded with
    chat_id: Mapped[int | None] = mapped_column(BigInteger)  # the one chat it works on; None: every chat
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    beat_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Forgotten(Base):
    """A /forget: the identity forgotten and when, nothing else about them. It outlives the forgetting on
    purpose: `clipchat db restore` forgets them again in a backup taken before (storage/backup.py), and
    how many there are tells every bot process and model replica that the phrases they cache may be
    theirs (bot/engine/local.py)."""

    __tablename__ = "forgotten"

    user_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)  # or a sender chat
    forgotten_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
