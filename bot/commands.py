"""The commands: /start, /help, /caption, /tags, /ask, /mood, /search, /reset, /stats."""

from __future__ import annotations

from telegram import BotCommand, ReplyParameters, Update
from telegram.constants import ChatAction

from . import actions, text
from .context import BotContext
from .handlers import answer_question
from .sending import chat_action, reply, with_retries
from .telegram_io import replied_message_id, where

COMMANDS = [
    BotCommand("caption", "Describe the latest photo (or the one you reply to)"),
    BotCommand("tags", "Tags for the photo; or /tags cat, dog, fox to choose between labels"),
    BotCommand("ask", "Ask about the photo: /ask what colour is the car?"),
    BotCommand("mood", "The mood of the photo"),
    BotCommand("search", "Find an earlier photo in this chat: /search red bicycle"),
    BotCommand("reset", "Clear my memory of our conversation here"),
    BotCommand("forget", "Delete everything I know about you"),
    BotCommand("settings", "Group and channel admins: auto-captions, alt text"),
    BotCommand("help", "What I can do"),
]
HELP = ("Send me a photo and I'll describe and tag it. Then ask me about it: \"what colour is the car?\", "
        "\"is there a dog?\", \"what's the mood?\". Reply to an earlier photo to ask about that one.\n\n"
        + "\n".join(f"/{c.command} - {c.description}" for c in COMMANDS)
        + "\n\nIn groups, mention me or reply to me. I keep our conversation so I can follow up; "
          "/reset clears it and /forget deletes everything about you.")
NO_PHOTO = "I don't have a photo here yet. Send one, or reply to a photo with the command."


async def start(update: Update, context: BotContext) -> None:
    """Greet and explain."""
    await reply(update.effective_message, "Hi! I'm *clipchat*, a bot that looks at photos.\n\n" + HELP, markdown=True)


async def help_command(update: Update, context: BotContext) -> None:
    """List what the bot can do."""
    await reply(update.effective_message, HELP)


async def caption(update: Update, context: BotContext) -> None:
    """Describe the photo under discussion again."""
    message = update.effective_message
    image, _ = await actions.thread(context.services, where(message), replied_message_id(message))
    if image is None:
        await reply(message, NO_PHOTO)
        return
    seen = actions.Seen(image.caption, image.tags, None)
    await reply(message, text.describe(seen))


async def tags(update: Update, context: BotContext) -> None:
    """Top tags, or how well each given label fits."""
    message = update.effective_message
    labels = " ".join(context.args or [])
    async with chat_action(context.bot, message.chat_id):
        image, scored = await actions.tags_for(context.services, where(message), labels, replied_message_id(message))
    if image is None:
        await reply(message, NO_PHOTO)
        return
    lines = [f"{tag['label']}: {tag['score']:.0%}" for tag in scored[:10]]
    await reply(message, "\n".join(lines) if lines else "Nothing stands out clearly enough to tag.")


async def ask(update: Update, context: BotContext) -> None:
    """/ask <question>."""
    question = " ".join(context.args or [])
    if not question:
        await reply(update.effective_message, "Ask me something about the photo, e.g. /ask what colour is it?")
        return
    await answer_question(update, context, question)


async def mood(update: Update, context: BotContext) -> None:
    """How the photo feels."""
    message = update.effective_message
    async with chat_action(context.bot, message.chat_id):
        image, answer = await actions.mood(context.services, where(message), replied_message_id(message))
    await reply(message, answer.text if answer else NO_PHOTO)


async def search(update: Update, context: BotContext) -> None:
    """/search <text>: send back the best-matching earlier photo(s) of this chat."""
    message = update.effective_message
    phrase = " ".join(context.args or [])
    if not phrase:
        await reply(message, "Tell me what to look for, e.g. /search red bicycle")
        return
    services = context.services
    async with chat_action(context.bot, message.chat_id, ChatAction.UPLOAD_PHOTO):
        hits = await actions.search(services, message.chat_id, phrase[:300])
        if not hits:
            await reply(message, "I haven't seen any photos in this chat yet (or they were deleted).")
            return
        for record, score in hits:
            send = context.bot.send_document if record.media_kind == "document" else context.bot.send_photo
            caption = f"{record.caption} (match {score:.2f})"[:1024]
            await with_retries(lambda send=send, file_id=record.file_id, caption=caption: send(
                message.chat_id, file_id, caption=caption, reply_parameters=ReplyParameters(
                    message.message_id, allow_sending_without_reply=True)), services.settings.send_retries)


async def reset(update: Update, context: BotContext) -> None:
    """Clear this user's conversation in this chat."""
    removed = await actions.reset(context.services, where(update.effective_message))
    await reply(update.effective_message, f"Done: I cleared our conversation here ({removed} messages). "
                                          "Your photos are still searchable.")


async def stats(update: Update, context: BotContext) -> None:
    """Operators only: row counts and queue depths."""
    message = update.effective_message
    if message.from_user is None or message.from_user.id not in context.services.settings.admin_ids:
        await reply(message, "Only the bot's operators can see statistics.")
        return
    from storage import statistics

    async with context.services.sessions() as session:
        counts = await statistics(session)
    await reply(message, "\n".join(f"{name}: {value}" for name, value in counts.items()))
