"""Admin-only /settings for groups and channels, and /forget with its confirmation."""

from __future__ import annotations

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.constants import ChatMemberStatus

from ..core import records
from ..core.incoming import Where
from ..core.records import Switches
from .context import BotContext
from .sending import reply

NAMES = {"autocaption": "auto_caption", "auto_caption": "auto_caption", "alttext": "alt_text", "alt_text": "alt_text"}
LABELS = {"auto_caption": "Auto-captions (every photo in the group)", "alt_text": "Alt text on photo posts"}
ONLY_ADMINS = "Only this chat's admins can change my settings."
ADMIN_STATUSES = (ChatMemberStatus.ADMINISTRATOR, ChatMemberStatus.OWNER)


async def is_admin(context: BotContext, chat_id: int, chat_kind: str, user_id: int | None) -> bool:
    """Operators, and the chat's admins; in a channel only admins can post at all."""
    if user_id is None:
        return chat_kind == "channel"  # a channel post is written by the channel's admins
    if user_id in context.services.settings.admin_ids:
        return True
    member = await context.bot.get_chat_member(chat_id, user_id)
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
    user_id = message.from_user.id if message.from_user else None
    if not await is_admin(context, chat.id, chat.type, user_id):
        await reply(message, ONLY_ADMINS)
        return
    where = Where(chat.id, chat.type, user_id)
    args = [arg.lower() for arg in (context.args if context.args is not None else message.text.split()[1:])]
    if len(args) == 2 and args[0] in NAMES and args[1] in ("on", "off"):
        current = await records.set_switch(context.services, where, NAMES[args[0]], args[1] == "on")
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
    """Ask before deleting everything about the user."""
    message = update.effective_message
    user_id = message.from_user.id
    keyboard = InlineKeyboardMarkup([[InlineKeyboardButton("Yes, delete everything", callback_data=f"forget:yes:{user_id}"),
                                      InlineKeyboardButton("Cancel", callback_data=f"forget:no:{user_id}")]])
    await reply(message, "This deletes every photo you sent me, our conversations in every chat and your "
                         "settings. It can't be undone. Are you sure?", reply_markup=keyboard)


async def forget_button(update: Update, context: BotContext) -> None:
    """The answer to /forget's question."""
    query = update.callback_query
    _, choice, user_id = query.data.split(":")
    if int(user_id) != query.from_user.id:
        await query.answer("This question was for someone else.", show_alert=True)
        return
    await query.answer()
    if choice != "yes":
        await query.edit_message_text("Cancelled: I kept everything.")
        return
    removed = await records.forget(context.services, query.from_user.id)
    await query.edit_message_text(f"Done. I deleted {removed.images} photos and {removed.turns} messages, "
                                  "and everything else I knew about you.")
