"""Conversation context, keyed per user and per chat.

A thread is (chat, topic, user): what someone says privately never appears in a group,
in a group each person has their own thread, and in a forum each topic is a room of its
own (`topic_id`, Telegram's message_thread_id; 0 in a chat without topics). Images belong
to the chat, so anyone in a group can ask about a photo posted there, by replying to it.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import BigInteger, delete, insert, literal, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from clipchat.facts import PhotoFacts
from clipchat.kinds import ChatKind, MediaKind, Role

from .database import changed_rows
from .models import Base, Chat, ImageRecord, SentPhoto, Turn, User, encode_embedding, encode_tags, utcnow


@dataclass(frozen=True)
class NewImage:
    """A photo to store: where it was posted, its Telegram file, and what the models saw in it."""

    chat_id: int
    sender_id: int | None  # None for channel posts
    message_id: int
    file_id: str
    file_unique_id: str
    facts: PhotoFacts
    media_group_id: str | None = None
    media_kind: MediaKind = MediaKind.PHOTO
    spoiler: bool = False  # posted behind a spoiler
    topic_id: int = 0  # the forum topic it was posted in; 0: none


async def ensure_chat(session: AsyncSession, chat_id: int, kind: ChatKind) -> None:
    await _insert_if_missing(session, Chat, id=chat_id, kind=kind, first_seen=utcnow())


async def ensure_user(session: AsyncSession, user_id: int) -> None:
    await _insert_if_missing(session, User, id=user_id, first_seen=utcnow())


async def _insert_if_missing(session: AsyncSession, model: type[Base], **values: object) -> None:
    """INSERT ... ON CONFLICT DO NOTHING: everyone's first message in a new group races to create it."""
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(postgresql.insert(model).values(**values).on_conflict_do_nothing())
    else:
        await session.execute(sqlite.insert(model).values(**values).on_conflict_do_nothing())


async def save_image(session: AsyncSession, image: NewImage, chat_kind: ChatKind = ChatKind.PRIVATE) -> ImageRecord:
    await ensure_chat(session, image.chat_id, chat_kind)
    if image.sender_id is not None:
        await ensure_user(session, image.sender_id)
    record = ImageRecord(
        chat_id=image.chat_id,
        sender_id=image.sender_id,
        message_id=image.message_id,
        topic_id=image.topic_id,
        media_group_id=image.media_group_id,
        file_id=image.file_id,
        file_unique_id=image.file_unique_id,
        caption=image.facts.caption,
        tags=encode_tags(image.facts.tags),
        embedding=encode_embedding(image.facts.embedding),
        embedding_model=image.facts.model,
        media_kind=image.media_kind,
        spoiler=image.spoiler,
    )
    session.add(record)
    await session.flush()
    return record


async def add_turn(
    session: AsyncSession,
    chat_id: int,
    user_id: int,
    role: Role,
    text: str,
    image_id: int | None = None,
    chat_kind: ChatKind = ChatKind.PRIVATE,
    message_id: int | None = None,
    topic_id: int = 0,
) -> Turn:
    """One turn of a thread; raises ValueError for a role that is none of Role's."""
    role = Role(role)
    await ensure_chat(session, chat_id, chat_kind)
    await ensure_user(session, user_id)
    turn = Turn(
        chat_id=chat_id,
        user_id=user_id,
        topic_id=topic_id,
        role=role,
        text=text,
        image_id=image_id,
        message_id=message_id,
    )
    session.add(turn)
    await session.flush()
    return turn


async def recent_turns(
    session: AsyncSession, chat_id: int, user_id: int, limit: int = 20, topic_id: int = 0
) -> list[Turn]:
    """The thread's last `limit` turns, oldest first."""
    rows = await session.scalars(
        select(Turn)
        .where(Turn.chat_id == chat_id, Turn.user_id == user_id, Turn.topic_id == topic_id)
        .order_by(Turn.id.desc())
        .limit(limit)
    )
    return list(reversed(rows.all()))


async def add_sent_photos(session: AsyncSession, chat_id: int, shown: list[tuple[int, int]]) -> None:
    """The bot's messages in this chat that show a stored photo, as (message id, image id) pairs. A pair whose
    photo was deleted meanwhile (its sender's /forget, racing a /search) is left out: each row is written by
    a statement that reads its photo, so a race costs that row, never the others on a foreign key error."""
    sent_at = utcnow()
    for message_id, image_id in shown:
        await session.execute(
            insert(SentPhoto).from_select(
                ["chat_id", "message_id", "image_id", "sent_at"],
                select(
                    literal(chat_id, BigInteger),
                    literal(message_id, BigInteger),
                    ImageRecord.id,
                    literal(sent_at, SentPhoto.__table__.c.sent_at.type),
                ).where(ImageRecord.id == image_id),
            )
        )


async def image_exists(session: AsyncSession, image_id: int) -> bool:
    """Whether the stored photo `image_id` is still there (not forgotten)."""
    return await session.scalar(select(ImageRecord.id).where(ImageRecord.id == image_id)) is not None


async def image_by_message(session: AsyncSession, chat_id: int, message_id: int) -> ImageRecord | None:
    """The photo posted as `message_id` in this chat, the one the bot's message `message_id` showed (a
    /search result), or the one it was about (an answer): what a reply points at.

    Only rows kept since the chat was first seen count: a group upgraded to a supergroup brings its rows
    along (`chat_moves`), but their message ids are the old group's, and the supergroup numbers its messages
    anew, so a reply to its message 5 is not a reply to the old group's message 5."""
    since = select(Chat.first_seen).where(Chat.id == chat_id).scalar_subquery()
    posted = await session.scalar(
        select(ImageRecord)
        .where(ImageRecord.chat_id == chat_id, ImageRecord.message_id == message_id, ImageRecord.created_at >= since)
        .order_by(ImageRecord.id.desc())
        .limit(1)
    )
    if posted is not None:
        return posted
    shown = await session.scalar(
        select(ImageRecord)
        .join(SentPhoto, SentPhoto.image_id == ImageRecord.id)
        .where(SentPhoto.chat_id == chat_id, SentPhoto.message_id == message_id, SentPhoto.sent_at >= since)
        .order_by(SentPhoto.id.desc())
        .limit(1)
    )
    if shown is not None:
        return shown
    return await session.scalar(
        select(ImageRecord)
        .join(Turn, Turn.image_id == ImageRecord.id)
        .where(Turn.chat_id == chat_id, Turn.message_id == message_id, Turn.created_at >= since)
        .order_by(Turn.id.desc())
        .limit(1)
    )


async def image_under_discussion(
    session: AsyncSession, chat_id: int, user_id: int, reply_to_message_id: int | None = None, topic_id: int = 0
) -> ImageRecord | None:
    """The photo replied to (in any topic: a message id names one message in the whole chat); else the latest
    this user sent or talked about in this chat's topic `topic_id`."""
    if reply_to_message_id is not None:
        replied = await image_by_message(session, chat_id, reply_to_message_id)
        if replied is not None:
            return replied
    sent = await session.scalar(
        select(ImageRecord)
        .where(ImageRecord.chat_id == chat_id, ImageRecord.sender_id == user_id, ImageRecord.topic_id == topic_id)
        .order_by(ImageRecord.id.desc())
        .limit(1)
    )
    discussed = await session.scalar(
        select(ImageRecord)
        .join(Turn, Turn.image_id == ImageRecord.id)
        .where(Turn.chat_id == chat_id, Turn.user_id == user_id, Turn.topic_id == topic_id)
        .order_by(Turn.id.desc())
        .limit(1)
    )
    if (
        sent is not None
        and discussed is not None
        and sent.media_group_id
        and (sent.media_group_id == discussed.media_group_id)
    ):  # an album photo picked out by position ("the second one") stays under discussion
        return discussed
    candidates = [image for image in (sent, discussed) if image is not None]
    return max(candidates, key=lambda image: image.id) if candidates else None


ALBUM_MOST = 10  # Telegram's largest album


async def album_of(session: AsyncSession, image: ImageRecord) -> list[ImageRecord]:
    """The album `image` was posted in, in the order it was posted (its position is what people name: "the
    second one"); empty for a photo sent on its own."""
    if not image.media_group_id:
        return []
    rows = await session.scalars(
        select(ImageRecord)
        .where(
            ImageRecord.chat_id == image.chat_id,
            ImageRecord.media_group_id == image.media_group_id,
            ImageRecord.topic_id == image.topic_id,
        )
        .order_by(ImageRecord.message_id, ImageRecord.id)
        .limit(ALBUM_MOST)
    )
    return list(rows.all())


async def reset_thread(session: AsyncSession, chat_id: int, user_id: int, topic_id: int = 0) -> int:
    """Forget this user's conversation in this chat's topic (their photos stay); returns turns removed."""
    result = await session.execute(
        delete(Turn).where(Turn.chat_id == chat_id, Turn.user_id == user_id, Turn.topic_id == topic_id)
    )
    return changed_rows(result)
