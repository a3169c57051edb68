"""Message handlers: photos, images sent as files, albums, questions, channel posts, who is in a group and a
group's upgrade.

Each unpacks the update, hands it to the core and lets the core answer through a `TelegramChat`.
"""

from __future__ import annotations

import logging
from dataclasses import replace

from telegram import Message, Update

from clipchat.errors import StorageDown
from clipchat.i18n import N_

from ..core import photos, records, talk
from ..core.incoming import PhotoMessage
from .albums import Album
from .context import BotContext
from .sending import reply
from .telegram_chat import TelegramChat
from .telegram_io import (
    addressed,
    message_of,
    photo_file,
    photo_message,
    replied_message_id,
    sender_id,
    upgrade_of,
    user_text,
    where,
)

log = logging.getLogger(__name__)
NOT_AN_IMAGE = N_("I can only look at images (JPEG, PNG or WebP, as a photo or a file). This file isn't one.")


def chat_for(context: BotContext, message: Message) -> TelegramChat:
    services = context.services
    return TelegramChat(
        message, services.settings.send_retries, services.models.limits.max_bytes, services.settings.download_timeout_s
    )


async def on_photo(update: Update, context: BotContext) -> None:
    """A photo or image file in a private chat or group."""
    message = message_of(update)
    incoming = photo_message(message, context.bot)
    if album_id := message.media_group_id:
        if context.albums.addressed(message.chat_id, album_id):  # the caption came with another photo
            incoming = replace(incoming, addressed=True)
        looking = photos.look_if_admitted(context.services, chat_for(context, message), incoming)
        await context.albums.add(message, album_id, incoming, looking, lambda album: _finish_album(context, album))
        return
    await photos.on_photo(context.services, incoming, chat_for(context, message))


async def _finish_album(context: BotContext, album: Album) -> None:
    results = [(photo, await _settled(task)) for photo, task in album.photos]
    await photos.on_album(
        context.services, album.where, album.text, album.addressed, results, chat_for(context, album.first)
    )


async def _settled(task):
    try:
        return await task
    except Exception as error:  # each photo's own failure goes into the album's reply
        return error


async def on_other_file(update: Update, context: BotContext) -> None:
    """A file that is not an image, sent privately: say what the bot can read."""
    message = message_of(update)
    _ = await context.speaking_to(where(message))
    await reply(message, _(NOT_AN_IMAGE))


async def on_text(update: Update, context: BotContext) -> None:
    """A follow-up question about the latest photo, or about the photo replied to."""
    message = message_of(update)
    if not addressed(message, context.bot.username, context.bot.id):
        return
    question = user_text(message, context.bot.username)
    if question:
        await answer_question(update, context, question)


async def answer_question(update: Update, context: BotContext, question: str) -> None:
    """Shared by plain text and /ask; a question right after an album waits for the album's reply."""
    message = message_of(update)
    await context.albums.settled(message.chat_id, where(message).user_id)
    await talk.on_question(
        context.services, where(message), question, replied_message_id(message), chat_for(context, message)
    )


async def on_channel_photo(update: Update, context: BotContext) -> None:
    """A photo posted in a channel: alt text, when the channel turned it on."""
    post = message_of(update)
    as_written = PhotoMessage(where(post), photo_file(post), post.caption or "", addressed=False)  # spaces and all
    await photos.on_channel_post(context.services, as_written, chat_for(context, post))


async def on_upgrade(update: Update, context: BotContext) -> None:
    """A group became a supergroup (either chat's announcement): what was kept under its old id moves."""
    old_id, new_id = upgrade_of(message_of(update))
    await records.chat_upgraded(context.services, old_id, new_id)


async def on_group_message(update: Update, context: BotContext) -> None:
    """Every new message in a group, before anything answers it: who the bot has seen there, and since when
    (/search shows each person only the photos posted since). A join notes the newcomers as arriving now, a
    departure forgets when someone came. The group's anonymous admins are not noted: they see everything."""
    message = message_of(update)
    chat_id, services = message.chat_id, context.services
    gone = message.left_chat_member.id if message.left_chat_member is not None else None
    newcomers = [member.id for member in message.new_chat_members if not member.is_bot]
    sender = sender_id(message)
    try:
        if gone is not None:
            await records.left(services, chat_id, gone)
        if newcomers:
            await records.joined(services, chat_id, newcomers)
        if sender is not None and sender not in (chat_id, gone, *newcomers):
            await records.seen(services, chat_id, [sender])
    except StorageDown as error:  # the message is still answered; /search notes a searcher it never saw as new
        log.warning("could not note who is in group %s: %s", chat_id, error.detail)
