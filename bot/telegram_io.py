"""Reading what arrived: which file is the photo, whether the bot was addressed, and the download."""

from __future__ import annotations

import logging

from telegram import Bot, Message, MessageEntity
from telegram.error import BadRequest

from vision.errors import BadImage

from .actions import PhotoFile, Where
from .text import without_mention

log = logging.getLogger(__name__)


def where(message: Message) -> Where:
    user = message.from_user
    return Where(chat_id=message.chat_id, chat_kind=message.chat.type, user_id=user.id if user else None)


def photo_file(message: Message) -> PhotoFile | None:
    """The largest size of a photo, or an image sent as a file; None for anything else."""
    if message.photo:
        largest = message.photo[-1]
        return PhotoFile(message.message_id, largest.file_id, largest.file_unique_id, "photo",
                         message.media_group_id)
    if message.document is not None and (message.document.mime_type or "").startswith("image/"):
        document = message.document
        return PhotoFile(message.message_id, document.file_id, document.file_unique_id, "document",
                         message.media_group_id)
    return None


def file_size(message: Message) -> int | None:
    if message.photo:
        return message.photo[-1].file_size
    return message.document.file_size if message.document else None


async def download(bot: Bot, message: Message, max_bytes: int) -> bytes:
    """The photo's bytes; too-large files are refused before any download."""
    size = file_size(message)
    limit_mb = max_bytes // (1024 * 1024)
    too_big = BadImage("too_large", f"That file is too big for me: please send an image under {limit_mb} MB "
                                    f"(as a photo, Telegram compresses it for you).",
                       detail=f"{size} bytes > {max_bytes}")
    if size is not None and size > max_bytes:
        raise too_big
    photo = photo_file(message)
    try:
        telegram_file = await bot.get_file(photo.file_id)
    except BadRequest as error:
        if "too big" in str(error).lower():  # the public Bot API serves at most 20 MB
            raise too_big from error
        raise
    data = bytes(await telegram_file.download_as_bytearray())
    if len(data) > max_bytes:
        raise too_big
    return data


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
    if message.chat.type == "private":
        return True
    return mentions_bot(message, username, bot_id) or replies_to_bot(message, bot_id)


def user_text(message: Message, username: str) -> str:
    """The message's words without the bot's @name."""
    return without_mention(message.text or message.caption or "", username)


def replied_message_id(message: Message) -> int | None:
    return message.reply_to_message.message_id if message.reply_to_message else None
