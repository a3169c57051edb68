"""Message handlers: photos, images sent as files, albums, questions and channel posts."""

from __future__ import annotations

import logging

from telegram import Message, Update

from vision.errors import BadImage

from . import actions, text
from .albums import Album
from .context import BotContext
from .sending import chat_action, reply, with_retries
from .telegram_io import addressed, download, photo_file, replied_message_id, user_text, where

log = logging.getLogger(__name__)
NOT_AN_IMAGE = "I can only look at images (JPEG, PNG or WebP, as a photo or a file). This file isn't one."


async def on_photo(update: Update, context: BotContext) -> None:
    """A photo or image file in a private chat or group: describe it, or answer the question in its caption."""
    message = update.effective_message
    services = context.services
    spoken_to = addressed(message, context.bot.username, context.bot.id)
    if message.chat.type != "private" and not spoken_to:
        switches = await actions.switches(services, message.chat_id)
        spoken_to = switches.auto_caption
    words = user_text(message, context.bot.username)
    photo = photo_file(message)
    seen = _describe(context, message)
    if message.media_group_id:
        context.albums.add(message, where(message), photo, seen, words, spoken_to,
                           lambda album: _finish_album(context, album))
        return
    if not spoken_to:  # a group photo nobody asked about: remember it for /search, say nothing
        try:
            described = await seen
        except BadImage as error:
            log.info("unaddressed group photo skipped: %s", error.detail)
            return
        await actions.remember_photos(services, where(message), [(photo, described)], words, "", None)
        return
    async with chat_action(context.bot, message.chat_id):
        described = await seen
        if text.is_question(words):
            answer = await actions.ask_about_new_photo(services, where(message), described, words)
            response = f"{answer.text}\n\n({text.describe(described, tags=3)})"
        else:
            response = text.describe(described)
    sent = await reply(message, response, retries=services.settings.send_retries)
    await actions.remember_photos(services, where(message), [(photo, described)], words, response,
                                  sent.message_id if sent else None)


async def _describe(context: BotContext, message: Message) -> actions.Seen:
    limit = context.services.inference.limits.max_bytes
    return await context.services.inference.describe(await download(context.bot, message, limit))


async def _finish_album(context: BotContext, album: Album) -> None:
    services = context.services
    results = [(photo, await _settled(task)) for photo, task in album.photos]
    if not album.addressed:
        seen = [(photo, result) for photo, result in results if not isinstance(result, BaseException)]
        await actions.remember_photos(services, album.where, seen, album.text, "", None)
        return
    lines, good = [], []
    for number, (photo, result) in enumerate(results, 1):
        if isinstance(result, BadImage):
            lines.append(f"{number}. {result.user_message}")
        elif isinstance(result, BaseException):
            log.error("album photo %d failed", number, exc_info=result)
            lines.append(f"{number}. Sorry, something went wrong while I looked at this one.")
        else:
            lines.append(f"{number}. {text.describe(result, tags=3)}")
            good.append((photo, result))
    response = f"{len(results)} photos:\n" + "\n".join(lines)
    sent = await reply(album.first, response, retries=services.settings.send_retries)
    await actions.remember_photos(services, album.where, good, album.text, response,
                                  sent.message_id if sent else None)


async def _settled(task):
    try:
        return await task
    except Exception as error:  # each photo's own failure goes into the album's reply
        return error


async def on_other_file(update: Update, context: BotContext) -> None:
    """A file that is not an image, sent privately: say what the bot can read."""
    await reply(update.effective_message, NOT_AN_IMAGE)


async def on_text(update: Update, context: BotContext) -> None:
    """A follow-up question about the latest photo, or about the photo replied to."""
    message = update.effective_message
    if not addressed(message, context.bot.username, context.bot.id):
        return
    question = user_text(message, context.bot.username)
    if not question:
        return
    await answer_question(update, context, question)


async def answer_question(update: Update, context: BotContext, question: str) -> None:
    """Shared by plain text and /ask."""
    message = update.effective_message
    services = context.services
    await context.albums.settled(message.chat_id, message.from_user.id if message.from_user else None)
    async with chat_action(context.bot, message.chat_id):
        answer, image_id = await actions.ask(services, where(message), question, replied_message_id(message))
    sent = await reply(message, answer.text, retries=services.settings.send_retries)
    await actions.remember_exchange(services, where(message), question, answer.text, image_id,
                                    sent.message_id if sent else None)


async def on_channel_photo(update: Update, context: BotContext) -> None:
    """A photo posted in a channel: add alt text to its caption when the channel turned that on."""
    post = update.effective_message
    services = context.services
    if not (await actions.switches(services, post.chat_id)).alt_text:
        return
    described = await _describe(context, post)
    caption = text.with_alt_text(post.caption or "", described.caption.strip().capitalize() + ".")
    if caption is None:
        log.info("channel %s post %s: caption already full, alt text skipped", post.chat_id, post.message_id)
    else:
        await with_retries(lambda: context.bot.edit_message_caption(
            chat_id=post.chat_id, message_id=post.message_id, caption=caption,
            caption_entities=post.caption_entities or None), services.settings.send_retries)
    await actions.remember_photos(services, where(post), [(photo_file(post), described)], post.caption or "",
                                  caption or "", None)
