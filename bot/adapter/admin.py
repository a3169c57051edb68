"""Admin-only /settings for groups and channels, and /forget with its confirmation."""

from __future__ import annotations

import logging

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.constants import ChatMemberStatus
from telegram.error import TelegramError

from ..core import records
from ..core.incoming import Where
from ..core.records import Switches
from .context import BotContext
from .sending import reply
from .telegram_io import where, writes_as_chat

log = logging.getLogger(__name__)

NAMES = {"autocaption": "auto_caption", "auto_caption": "auto_caption", "alttext": "alt_text", "alt_text": "alt_text"}
LABELS = {"auto_caption": "Auto-captions (every photo in the group)", "alt_text": "Alt text on photo posts"}
ONLY_ADMINS = "Only this chat's admins can change my settings."
ADMIN_STATUSES = (ChatMemberStatus.ADMINISTRATOR, ChatMemberStatus.OWNER)
ANONYMOUS_FORGET = ("You're writing as {name}, not as yourself, so I can't tell you apart from others who "
                    "write that way. This deletes everything sent to me as {name}, by anyone, including our "
                    "conversations; only an admin of {name} can confirm. What you sent from your own account "
                    "stays: send /forget from it (in a private chat with me) for that. Are you sure?")


async def is_admin(context: BotContext, chat_id: int, chat_kind: str, user_id: int | None) -> bool:
    """Operators, and the chat's admins; in a channel only admins can post at all."""
    if user_id is None:
        return chat_kind == "channel"  # a channel post is written by the channel's admins
    if user_id == chat_id:  # writing as the group itself: only its admins can stay anonymous
        return True
    if user_id < 0:  # writing as some channel: it says nothing about this group
        return False
    if user_id in context.services.settings.admin_ids:
        return True
    member = await context.bot.get_chat_member(chat_id, user_id)
    return member.status in ADMIN_STATUSES


async def _may_forget(context: BotContext, identity: int, presser: int) -> bool:
    """A button press is the person asked, or for a group or channel identity, one of its admins
    (a button press always names the real person, even when their message was anonymous)."""
    if identity == presser:
        return True
    if identity >= 0:
        return False
    try:
        member = await context.bot.get_chat_member(identity, presser)
    except TelegramError as error:  # the bot is not in that channel: nobody can be shown to be its admin
        log.info("could not check admins of %s for /forget: %s", identity, error)
        return False
    return member.status in ADMIN_STATUSES


def _switch_for(chat_kind: str) -> str:
    return "alt_text" if chat_kind == "channel" else "auto_caption"


def _keyboard(chat_kind: str, current: Switches) -> InlineKeyboardMarkup:
    name = _switch_for(chat_kind)
    on = getattr(current, name)
    return InlineKeyboardMarkup([[InlineKeyboardButton(
        f"{'Turn off' if on else 'Turn on'}: {LABELS[name]}", callback_data=f"settings:{name}:{int(not on)}")]])


def _describe(chat_kind: str, current: Switches) -> str:
    name = _switch_for(chat_kind)
    return f"{LABELS[name]}: {'on' if getattr(current, name) else 'off'}."


async def settings(update: Update, context: BotContext) -> None:
    """/settings, or /settings autocaption|alttext on|off, for admins of groups and channels."""
    message = update.effective_message
    chat = message.chat
    if chat.type == "private":
        await reply(message, "Settings belong to groups and channels: add me to one and send /settings there.")
        return
    user_id = where(message).user_id
    if not await is_admin(context, chat.id, chat.type, user_id):
        await reply(message, ONLY_ADMINS)
        return
    here = Where(chat.id, chat.type, user_id)
    args = [arg.lower() for arg in (context.args if context.args is not None else message.text.split()[1:])]
    if len(args) == 2 and args[0] in NAMES and args[1] in ("on", "off"):
        current = await records.set_switch(context.services, here, NAMES[args[0]], args[1] == "on")
        await reply(message, "Saved. " + _describe(chat.type, current))
        return
    current = await records.switches(context.services, chat.id)
    await reply(message, _describe(chat.type, current) + f"\nChange it with the button, or "
                f"/settings {'alttext' if chat.type == 'channel' else 'autocaption'} on|off.",
                reply_markup=_keyboard(chat.type, current))


async def settings_button(update: Update, context: BotContext) -> None:
    """A press on the /settings button."""
    query = update.callback_query
    chat = query.message.chat
    _, name, value = query.data.split(":")
    if not await is_admin(context, chat.id, chat.type, query.from_user.id):
        await query.answer(ONLY_ADMINS, show_alert=True)
        return
    current = await records.set_switch(context.services, Where(chat.id, chat.type, query.from_user.id), name,
                                       value == "1")
    await query.answer("Saved.")
    await query.edit_message_text(_describe(chat.type, current), reply_markup=_keyboard(chat.type, current))


async def forget(update: Update, context: BotContext) -> None:
    """Ask before deleting everything about the user (or the group or channel identity they write as)."""
    message = update.effective_message
    identity = where(message).user_id
    keyboard = InlineKeyboardMarkup([[InlineKeyboardButton("Yes, delete everything", callback_data=f"forget:yes:{identity}"),
                                      InlineKeyboardButton("Cancel", callback_data=f"forget:no:{identity}")]])
    if writes_as_chat(message):
        name = message.sender_chat.title or "this identity"
        await reply(message, ANONYMOUS_FORGET.format(name=name), reply_markup=keyboard)
        return
    await reply(message, "This deletes every photo you sent me, our conversations in every chat and your "
                         "settings. It can't be undone. Are you sure?", reply_markup=keyboard)


async def forget_button(update: Update, context: BotContext) -> None:
    """The answer to /forget's question: only the person asked, or an admin of the identity they wrote as."""
    query = update.callback_query
    _, choice, identity = query.data.split(":")
    if not await _may_forget(context, int(identity), query.from_user.id):
        await query.answer("This question was for someone else.", show_alert=True)
        return
    await query.answer()
    if choice != "yes":
        await query.edit_message_text("Cancelled: I kept everything.")
        return
    await context.albums.settled_sender(int(identity))  # album photos still being looked at land first
    removed = await records.forget(context.services, int(identity))
    await query.edit_message_text(f"Done. I deleted {removed.images} photos and {removed.turns} messages, "
                                  "and everything else I knew about you.")
