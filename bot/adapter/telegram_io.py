"""Reading what arrived: which file is the photo, who sent it where, and whether the bot was addressed.

python-telegram-bot types every part of an update as optional, since an `Update` may carry any of a dozen
kinds of event. The handlers' routes (`application.add_routes`) decide which parts are there: `message_of`,
`user_of` and `button_press` return them, and raise `Misrouted` when a route let through an update without.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import StrEnum
from typing import NamedTuple

from telegram import Bot, CallbackQuery, Chat, Message, MessageEntity, Update, User

from clipchat.kinds import ChatKind, MediaKind

from ..core.incoming import PhotoFile, PhotoMessage, Where
from ..core.text import without_mention

log = logging.getLogger(__name__)


# Accounts Telegram puts in `from` for many people at once: anonymous group admins (GroupAnonymousBot),
# people posting as a channel (Channel_Bot) and a linked channel's posts forwarded into its group
# (Telegram). The one who wrote is known only as `sender_chat`.
SHARED_ACCOUNTS = frozenset({1087968824, 136817688, 777000})


class Misrouted(TypeError):
    """An update reached a handler whose route should have kept it away: a mistake in `add_routes`."""


def message_of(update: Update) -> Message:
    """The message of an update routed to a message or command handler (their filters pass only updates
    that carry one: a new message, a channel post)."""
    message = update.effective_message
    if message is None:
        raise Misrouted(f"update {update.update_id} reached a message handler without a message")
    return message


def user_of(update: Update) -> User:
    """Who sent an update routed by `filters.UpdateType.MESSAGE`: Telegram names a sender on every message
    outside channels (a stand-in account for someone writing as a chat)."""
    user = update.effective_user
    if user is None:
        raise Misrouted(f"update {update.update_id} reached a handler for people's messages without a sender")
    return user


class ButtonPress(NamedTuple):
    query: CallbackQuery
    data: str  # what the button says, matched by its handler's pattern
    chat: Chat  # where the bot's message with the button is


def button_press(update: Update) -> ButtonPress:
    """A press on one of the bot's inline buttons, routed by `CallbackQueryHandler(pattern=...)`: the pattern
    matched its data, and the bot puts buttons only on its own chat messages (never inline-mode ones)."""
    query = update.callback_query
    if query is None or query.data is None or query.message is None:
        raise Misrouted(f"update {update.update_id} reached a button handler without a press on a chat message")
    return ButtonPress(query, query.data, query.message.chat)


def sender_id(message: Message) -> int | None:
    """Who wrote this, as the bot keys queues and conversations: the person, or the chat they wrote as
    (an anonymous admin's is the group itself). None for a channel's own post."""
    user = message.from_user
    if message.sender_chat is not None and (user is None or user.id in SHARED_ACCOUNTS):
        return message.sender_chat.id if message.chat.type != ChatKind.CHANNEL else None
    return user.id if user else None


class Sender(StrEnum):
    """Whom an operator's /ban or /allow names: each is worded, and some refused, its own way."""

    USER = "user"  # a person, by their own account
    CHANNEL = "channel"  # a channel: its posts, and whoever writes as it
    CHAT = "chat"  # a group or channel named by its id: everyone in it, and whoever writes as it
    GROUP_ITSELF = "group itself"  # an anonymous admin: Telegram names only their group
    SHARED = "shared"  # one of Telegram's accounts for many senders (SHARED_ACCOUNTS)


@dataclass(frozen=True)
class Named:
    id: int  # what the ban is stored under
    sender: Sender
    title: str | None = None  # a chat's title, where the message showed it


def named_by_id(subject_id: int) -> Named:
    """Whom `/ban 123` names: a person, or (a negative id) a whole group or channel."""
    if subject_id in SHARED_ACCOUNTS:
        return Named(subject_id, Sender.SHARED)
    return Named(subject_id, Sender.CHAT if subject_id < 0 else Sender.USER)


def named_by_message(message: Message) -> Named | None:
    """Whom a reply to `message` names: the id `sender_id` keys the sender by, and what it stands for."""
    subject_id = sender_id(message)
    if subject_id is None:
        return None
    sender_chat = message.sender_chat
    if subject_id > 0 or sender_chat is None:
        return named_by_id(subject_id)
    if sender_chat.id == message.chat.id:  # an anonymous admin writes as the group itself
        return Named(subject_id, Sender.GROUP_ITSELF, sender_chat.title)
    return Named(subject_id, Sender.CHANNEL if sender_chat.type == ChatKind.CHANNEL else Sender.CHAT, sender_chat.title)


def upgrade_of(message: Message) -> tuple[int, int]:
    """(old id, new id) of a group that became a supergroup, from either chat's announcement: the old
    group's last message (`migrate_to_chat_id`) or the supergroup's first (`migrate_from_chat_id`)."""
    if message.migrate_to_chat_id is not None:
        return message.chat_id, message.migrate_to_chat_id
    if message.migrate_from_chat_id is not None:
        return message.migrate_from_chat_id, message.chat_id
    raise Misrouted(f"message {message.message_id} reached the upgrade handler without migrate_*_chat_id")


def writes_as_chat(message: Message) -> bool:
    """The sender hides behind a group or channel identity that others may share."""
    sender = sender_id(message)
    return sender is not None and sender < 0


def topic_of(message: Message) -> int | None:
    """The forum topic the message is in, which whatever answers it goes to; None outside topics (a chat without
    them, a forum's General). Telegram also sets message_thread_id on replies in an ordinary group, naming the
    first message of the chain of replies: that is no topic, and a send that names it is refused."""
    return message.message_thread_id if message.is_topic_message else None


def where(message: Message) -> Where:
    user = message.from_user
    return Where(
        chat_id=message.chat_id,
        chat_kind=ChatKind(message.chat.type),
        user_id=sender_id(message),
        language=user.language_code if user else None,
        topic=topic_of(message) or 0,
    )


def photo_file(message: Message) -> PhotoFile:
    """The largest size of a photo, or an image sent as a file: what `filters.PHOTO` and
    `filters.Document.IMAGE` route to the photo handlers."""
    if message.photo:
        largest = message.photo[-1]
        return PhotoFile(
            message.message_id,
            largest.file_id,
            largest.file_unique_id,
            MediaKind.PHOTO,
            message.media_group_id,
            size=largest.file_size,
            spoiler=bool(message.has_media_spoiler),
        )
    if message.document is not None and (message.document.mime_type or "").startswith("image/"):
        document = message.document
        return PhotoFile(
            message.message_id,
            document.file_id,
            document.file_unique_id,
            MediaKind.DOCUMENT,
            message.media_group_id,
            document.file_size,
        )
    raise Misrouted(f"message {message.message_id} reached a photo handler without a photo or image file")


def mentions_bot(message: Message, username: str, bot_id: int) -> bool:
    """The bot is named in the text or in a photo's caption (@name, or a mention by link)."""
    kinds: list[str | None] = [MessageEntity.MENTION, MessageEntity.TEXT_MENTION]
    entities = {**message.parse_entities(kinds), **message.parse_caption_entities(kinds)}
    for entity, text in entities.items():
        if entity.type == MessageEntity.TEXT_MENTION and entity.user and entity.user.id == bot_id:
            return True
        if entity.type == MessageEntity.MENTION and text.lower() == f"@{username.lower()}":
            return True
    return False


def replied_to(message: Message) -> Message | None:
    """The message this one answers, if its sender replied to one. In a forum topic Telegram puts the topic's
    opening message (its "topic created" notice) in reply_to_message of every message that replies to nothing
    else: that is where it was written, not what it answers."""
    replied = message.reply_to_message
    if replied is None or replied.forum_topic_created is not None:
        return None
    return replied


def replies_to_bot(message: Message, bot_id: int) -> bool:
    replied = replied_to(message)
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
    replied = replied_to(message)
    return replied.message_id if replied else None
