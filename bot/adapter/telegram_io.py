"""Reading what arrived: which file is the photo, who sent it where, and whether the bot was addressed."""

from __future__ import annotations

import logging

from telegram import Bot, Message, MessageEntity

from clipchat.kinds import ChatKind, MediaKind

from ..core.incoming import PhotoFile, PhotoMessage, Where
from ..core.text import without_mention

log = logging.getLogger(__name__)


# Accounts Telegram puts in `from` for many people at once: anonymous group admins (GroupAnonymousBot),
# people posting as a channel (Channel_Bot) and a linked channel's posts forwarded into its group
# (Telegram). The one who wrote is known only as `sender_chat`.
SHARED_ACCOUNTS = frozenset({1087968824, 136817688, 777000})


def sender_id(message: Message) -> int | None:
    """Who wrote this, as the bot keys queues and conversations: the person, or the chat they wrote as
    (an anonymous admin's is the group itself). None for a channel's own post."""
    user = message.from_user
    if message.sender_chat is not None and (user is None or user.id in SHARED_ACCOUNTS):
        return message.sender_chat.id if message.chat.type != ChatKind.CHANNEL else None
    return user.id if user else None


def writes_as_chat(message: Message) -> bool:
    """The sender hides behind a group or channel identity that others may share."""
    return sender_id(message) is not None and sender_id(message) < 0


def where(message: Message) -> Where:
    user = message.from_user
    return Where(
        chat_id=message.chat_id,
        chat_kind=ChatKind(message.chat.type),
        user_id=sender_id(message),
        language=user.language_code if user else None,
    )


def photo_file(message: Message) -> PhotoFile | None:
    """The largest size of a photo, or an image sent as a file; None for anything else."""
    if message.photo:
        largest = message.photo[-1]
        return PhotoFile(
            message.message_id, largest.file_id, largest.file_unique_id, MediaKind.PHOTO, message.media_group_id
        )
    if message.document is not None and (message.document.mime_type or "").startswith("image/"):
        document = message.document
        return PhotoFile(
            message.message_id, document.file_id, document.file_unique_id, MediaKind.DOCUMENT, message.media_group_id
        )
    return None


def mentions_bot(message: Message, username: str, bot_id: int) -> bool:
    """The bot is named in the text or in a photo's caption (@name, or a mention by link)."""
    kinds = [MessageEntity.MENTION, MessageEntity.TEXT_MENTION]
    entities = {**message.parse_entities(kinds), **message.parse_caption_entities(kinds)}
    for entity, text in entities.items():
        if entity.type == MessageEntity.TEXT_MENTION and entity.user and entity.user.id == bot_id:
            return True
        if entity.type == MessageEntity.MENTION and text.lower() == f"@{username.lower()}":
            return True
    return False


def replies_to_bot(message: Message, bot_id: int) -> bool:
    replied = message.reply_to_message
    return replied is not None and replied.from_user is not None and replied.from_user.id == bot_id


def addressed(message: Message, username: str, bot_id: int) -> bool:
    """In a group the bot speaks only when spoken to; in a private chat it always is."""
    if message.chat.type == ChatKind.PRIVATE:
        return True
    return mentions_bot(message, username, bot_id) or replies_to_bot(message, bot_id)


def user_text(message: Message, username: str) -> str:
    """The message's words without the bot's @name."""
    return without_mention(message.text or message.caption or "", username)


def photo_message(message: Message, bot: Bot) -> PhotoMessage:
    """A photo (or image file) as the core reads it."""
    return PhotoMessage(
        where(message), photo_file(message), user_text(message, bot.username), addressed(message, bot.username, bot.id)
    )


def replied_message_id(message: Message) -> int | None:
    return message.reply_to_message.message_id if message.reply_to_message else None
