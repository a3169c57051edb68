"""The commands: /start, /help, /caption, /tags, /ask, /read, /mood, /search, /reset, /stats, and the one table
(`COMMANDS`) of every command the bot answers, which both the routing and Telegram's command menu read."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from functools import partial
from typing import Any

from telegram import BotCommand, MessageEntity, ReplyParameters, Update
from telegram.constants import ChatAction

from clipchat.i18n import LANGUAGES, N_, Translator
from clipchat.kinds import MediaKind

from ..core import records, talk, text
from . import admin, operators
from .context import BotContext
from .handlers import answer_question
from .sending import chat_action, reply, with_retries
from .telegram_io import message_of, replied_message_id, topic_of, where

# Telegram's menus take a two-letter language code; every Chinese reader gets the Simplified menu.
MENU_LANGUAGES = {language: language.split("_")[0] for language in LANGUAGES if language != "en"}


def commands_in(_: Translator) -> list[BotCommand]:
    """The command menu in one language, as `set_my_commands` registers it for that language's users."""
    return [BotCommand(command.command, _(command.description)) for command in MENU]


def help_text(_: Translator) -> str:
    return (
        _(
            'Send me a photo and I\'ll describe and tag it. Then ask me about it: "what colour is the car?", '
            '"is there a dog?", "what\'s the mood?". Reply to an earlier photo to ask about that one.'
        )
        + "\n\n"
        + "\n".join(f"/{c.command} - {c.description}" for c in commands_in(_))
        + "\n\n"
        + _(
            "In groups, mention me or reply to me. I keep our conversation so I can follow up; "
            "/reset clears it and /forget deletes everything about you."
        )
    )


async def start(update: Update, context: BotContext) -> None:
    """Greet and explain."""
    message = message_of(update)
    _ = await context.speaking_to(where(message))
    await reply(
        message,
        _("Hi! I'm *clipchat*, a bot that looks at photos.") + "\n\n" + help_text(_),
        markdown=True,
    )


async def help_command(update: Update, context: BotContext) -> None:
    """List what the bot can do."""
    message = message_of(update)
    await reply(message, help_text(await context.speaking_to(where(message))))


async def caption(update: Update, context: BotContext) -> None:
    """Describe the photo under discussion again."""
    message = message_of(update)
    await reply(message, await talk.caption(context.services, where(message), replied_message_id(message)))


async def tags(update: Update, context: BotContext) -> None:
    """Top tags, or how well each given label fits."""
    message = message_of(update)
    async with chat_action(context.bot, message.chat_id, topic=topic_of(message)):
        answer = await talk.tags(
            context.services, where(message), " ".join(context.args or []), replied_message_id(message)
        )
    await reply(message, answer, previews=False)  # it repeats the labels someone gave


async def ask(update: Update, context: BotContext) -> None:
    """/ask <question>."""
    question = " ".join(context.args or [])
    if not question:
        message = message_of(update)
        _ = await context.speaking_to(where(message))
        await reply(message, _("Ask me something about the photo, e.g. /ask what colour is it?"))
        return
    await answer_question(update, context, question)


async def read(update: Update, context: BotContext) -> None:
    """The text in the photo, read by an answer model that sees it."""
    await answer_question(update, context, talk.READ_REQUEST)


async def mood(update: Update, context: BotContext) -> None:
    """How the photo feels."""
    message = message_of(update)
    async with chat_action(context.bot, message.chat_id, topic=topic_of(message)):
        answer = await talk.mood(context.services, where(message), replied_message_id(message))
    await reply(message, answer)


async def search(update: Update, context: BotContext) -> None:
    """/search <text>: send back the best-matching earlier photo(s) of this chat."""
    message = message_of(update)
    phrase = " ".join(context.args or [])
    if not phrase:
        _ = await context.speaking_to(where(message))
        await reply(message, _("Tell me what to look for, e.g. /search red bicycle"))
        return
    retries = context.services.settings.send_retries
    topic = topic_of(message)  # the photos go to the forum topic the search was asked in
    async with chat_action(context.bot, message.chat_id, ChatAction.UPLOAD_PHOTO, topic):
        answer = await talk.search(context.services, where(message), phrase)
        quote = ReplyParameters(message.message_id, allow_sending_without_reply=True)
        sent = []
        try:
            for hit in answer.found:
                # Sending takes a while (a busy group's limit spaces messages seconds apart): a photo its
                # sender made the bot forget meanwhile is not posted again after they were told it was gone
                if not await talk.still_there(context.services, hit):
                    continue
                # A spoiler photo goes back behind its spoiler, its description too (a document has no spoiler
                # of its own: the caption is what there is to hide)
                hidden = (
                    [MessageEntity(MessageEntity.SPOILER, 0, text.utf16_length(hit.caption))] if hit.spoiler else None
                )
                if hit.media_kind == MediaKind.DOCUMENT:
                    send = partial(context.bot.send_document, message.chat_id, hit.file_id)
                else:
                    send = partial(context.bot.send_photo, message.chat_id, hit.file_id, has_spoiler=hit.spoiler)
                shown = await with_retries(
                    partial(
                        send,
                        caption=hit.caption,
                        caption_entities=hidden,
                        reply_parameters=quote,
                        message_thread_id=topic,
                    ),
                    retries,
                )
                sent.append((shown.message_id, hit))
        finally:  # the photos that did go out are asked about by replying to them, even if a later one failed
            await talk.shown(context.services, where(message), sent)
        if answer.found and not sent and not answer.note:  # every result was forgotten before it went out
            _ = await context.speaking_to(where(message))
            await reply(message, _(talk.NO_PHOTOS_TO_SEARCH))
        if answer.note:
            await reply(message, answer.note)


async def reset(update: Update, context: BotContext) -> None:
    """Clear this user's conversation in this chat."""
    message = message_of(update)
    removed = await records.reset(context.services, where(message))
    _ = await context.speaking_to(where(message))
    await reply(
        message,
        _.plural(
            "Done: I cleared our conversation here ({count} message). Your photos are still searchable.",
            "Done: I cleared our conversation here ({count} messages). Your photos are still searchable.",
            removed,
            count=removed,
        ),
    )


async def stats(update: Update, context: BotContext) -> None:
    """Operators only: row counts."""
    message = message_of(update)
    language = (await context.speaking_to(where(message))).language
    await reply(message, await records.statistics_for(context.services, where(message).user_id, language))


@dataclass(frozen=True)
class Command:
    name: str
    handler: Callable[[Update, BotContext], Coroutine[Any, Any, None]]  # what PTB's handlers take
    menu: str | None  # its line in Telegram's command menu (translated per reader); None: answered, not listed


# In the menu's order. Left out of it: /start (Telegram's own Start button sends it) and the operators' commands.
COMMANDS = (
    Command("start", start, None),
    Command("caption", caption, N_("Describe the latest photo (or the one you reply to)")),
    Command("tags", tags, N_("Tags for the photo; or /tags cat, dog, fox to choose between labels")),
    Command("ask", ask, N_("Ask about the photo: /ask what colour is the car?")),
    Command("read", read, N_("Read the text in the photo")),
    Command("mood", mood, N_("The mood of the photo")),
    Command("search", search, N_("Find an earlier photo in this chat: /search red bicycle")),
    Command("reset", reset, N_("Clear my memory of our conversation here")),
    Command(
        "forget",
        admin.forget,
        N_("Delete everything I know about you; reply /forget this to a photo for just that one"),
    ),
    Command("settings", admin.settings, N_("Language; for group and channel admins also auto-captions, alt text")),
    Command("help", help_command, N_("What I can do")),
    Command("stats", stats, None),
    Command("allow", operators.allow, None),
    Command("ban", operators.ban, None),
    Command("unban", operators.unban, None),
    Command("usage", operators.usage, None),
    Command("quota", operators.quota, None),
)
MENU = [BotCommand(command.name, command.menu) for command in COMMANDS if command.menu is not None]
