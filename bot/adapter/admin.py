"""/settings (admins of groups and channels; in a private chat, its person chooses the language), /forget
with its confirmation, and /forget this in reply to one photo."""

from __future__ import annotations

import logging
import re

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.constants import ChatMemberStatus
from telegram.error import TelegramError

from clipchat.i18n import LANGUAGES, N_, Translator, choose, name_of, supported, translator
from clipchat.kinds import ChatKind

from ..core import records
from ..core.incoming import Where
from ..core.records import Switches
from .context import BotContext
from .ordering import PerUserOrder
from .sending import reply
from .telegram_io import button_press, message_of, replied_message_id, replied_to, where, writes_as_chat

log = logging.getLogger(__name__)

NAMES = {
    "autocaption": "auto_caption",
    "auto_caption": "auto_caption",
    "alttext": "alt_text",
    "alt_text": "alt_text",
    "index": "index_photos",
}
LABELS = {
    "auto_caption": N_("Auto-captions (every photo in the group)"),
    "alt_text": N_("Alt text on photo posts"),
    "index_photos": N_("Keep photos nobody asked me about, for /search"),
}
# What the bot's buttons carry; a client can send any data with a press, so anything else is ignored
FORGET_DATA = re.compile(r"forget:(?P<choice>yes|no):(?P<identity>-?[0-9]{1,16})")
SETTINGS_DATA = re.compile(r"settings:(?P<name>\w{1,32}):(?P<value>[01])")
ONLY_ADMINS = N_("Only this chat's admins can change my settings.")
LANGUAGE_CHOICES = "|".join(language.split("_")[0] for language in LANGUAGES) + "|auto"  # en|zh|ru|es|auto
ADMIN_STATUSES = (ChatMemberStatus.ADMINISTRATOR, ChatMemberStatus.OWNER)
ANONYMOUS_FORGET = N_(
    "You're writing as {name}, not as yourself, so I can't tell you apart from others who "
    "write that way. This deletes everything sent to me as {name}, by anyone, including our "
    "conversations; only an admin of {name} can confirm. What you sent from your own account "
    "stays: send /forget from it (in a private chat with me) for that. Are you sure?"
)
JUST_THIS = N_("To forget only the photo you replied to, send /forget this instead.")


async def is_admin(context: BotContext, chat_id: int, chat_kind: ChatKind, user_id: int | None) -> bool:
    """Operators, and the chat's admins; in a channel only admins can post at all."""
    if user_id is None:
        return chat_kind == ChatKind.CHANNEL  # a channel post is written by the channel's admins
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


def _switches_for(chat_kind: ChatKind) -> tuple[str, ...]:
    return ("alt_text",) if chat_kind == ChatKind.CHANNEL else ("auto_caption", "index_photos")


def _keyboard(chat_kind: ChatKind, current: Switches, _: Translator) -> InlineKeyboardMarkup:
    rows = []
    for name in _switches_for(chat_kind):
        on = getattr(current, name)
        setting = _(LABELS[name])
        label = _("Turn off: {setting}", setting=setting) if on else _("Turn on: {setting}", setting=setting)
        rows.append([InlineKeyboardButton(label, callback_data=f"settings:{name}:{int(not on)}")])
    return InlineKeyboardMarkup(rows)


def _describe(chat_kind: ChatKind, current: Switches, _: Translator) -> str:
    lines = [
        _("{setting}: on.", setting=_(LABELS[name]))
        if getattr(current, name)
        else _("{setting}: off.", setting=_(LABELS[name]))
        for name in _switches_for(chat_kind)
    ]
    return "\n".join([*lines, _language_line(current, _)])


def _language_line(current: Switches, _: Translator) -> str:
    if current.language is None:
        return _("Language: each person's own Telegram language.")
    return _("Language: {language}.", language=name_of(current.language))


async def _language_setting(context: BotContext, message, here: Where, value: str | None) -> None:
    """/settings language [en|zh|ru|es|auto]: the language every reply in this chat is written in; auto (None)
    answers each person in their own Telegram language."""
    sender = where(message).language
    if value is None or (value != "auto" and supported(value) is None):
        _ = await context.speaking_to(where(message))
        current = await records.switches(context.services, here.chat_id)
        known = ", ".join(f"{language.split('_')[0]} – {name_of(language)}" for language in LANGUAGES)
        refusal = "" if value is None else _("I can't speak {code} yet.", code=value) + " "
        await reply(
            message,
            refusal
            + _language_line(current, _)
            + "\n"
            + _(
                "I can answer in: {languages}. Choose with /settings language {choices}.",
                languages=known,
                choices=LANGUAGE_CHOICES,
            ),
        )
        return
    chosen = None if value == "auto" else supported(value)
    await records.set_switch(context.services, here, "language", chosen)
    _ = translator(choose(chosen, sender))  # said in the language just chosen
    if chosen is None:
        await reply(message, _("Saved. I'll answer everyone here in their own Telegram language."))
    else:
        await reply(message, _("Saved. I'll answer everyone here in {language}.", language=name_of(chosen)))


async def settings(update: Update, context: BotContext) -> None:
    """/settings, or /settings autocaption|alttext on|off, for admins of groups and channels."""
    message = message_of(update)
    chat, kind = message.chat, ChatKind(message.chat.type)
    # A channel's /settings comes through a text filter, not CommandHandler, which would have split the words
    words = context.args if context.args is not None else (message.text or "").split()[1:]
    args = [arg.lower() for arg in words]
    _ = await context.speaking_to(where(message))
    if kind == ChatKind.PRIVATE:  # a person's own chat: they choose its language; the switches are for groups
        if args[:1] == ["language"]:
            await _language_setting(context, message, where(message), args[1] if len(args) > 1 else None)
            return
        await reply(
            message,
            _(
                "Auto-captions and alt text belong to groups and channels: add me to one and send "
                "/settings there. Here you can choose my language: /settings language {choices}.",
                choices=LANGUAGE_CHOICES,
            ),
        )
        return
    user_id = where(message).user_id
    if not await is_admin(context, chat.id, kind, user_id):
        await reply(message, _(ONLY_ADMINS))
        return
    here = Where(chat.id, kind, user_id)
    if args[:1] == ["language"]:
        await _language_setting(context, message, here, args[1] if len(args) > 1 else None)
        return
    if len(args) == 2 and args[0] in NAMES and NAMES[args[0]] in _switches_for(kind) and args[1] in ("on", "off"):
        current = await records.set_switch(context.services, here, NAMES[args[0]], args[1] == "on")
        await reply(message, _("Saved.") + " " + _describe(kind, current, _))
        return
    current = await records.switches(context.services, chat.id)
    commands = "/settings alttext on|off" if kind == ChatKind.CHANNEL else "/settings autocaption|index on|off"
    await reply(
        message,
        _describe(kind, current, _)
        + "\n"
        + _(
            "Change them with the buttons, or {commands}; the language with /settings language {choices}.",
            commands=commands,
            choices=LANGUAGE_CHOICES,
        ),
        reply_markup=_keyboard(kind, current, _),
    )


async def settings_button(update: Update, context: BotContext) -> None:
    """A press on the /settings button."""
    query, data, chat = button_press(update)
    kind = ChatKind(chat.type)
    parsed = SETTINGS_DATA.fullmatch(data)
    if parsed is None or parsed["name"] not in _switches_for(kind):  # crafted: only this chat's switches flip
        await query.answer()
        return
    name, value = parsed["name"], parsed["value"]
    here = Where(chat.id, kind, query.from_user.id, query.from_user.language_code)
    _ = await context.speaking_to(here)
    if not await is_admin(context, chat.id, kind, query.from_user.id):
        await query.answer(_(ONLY_ADMINS), show_alert=True)
        return
    current = await records.set_switch(context.services, here, name, value == "1")
    await query.answer(_("Saved."))
    await query.edit_message_text(_describe(kind, current, _), reply_markup=_keyboard(kind, current, _))


async def forget(update: Update, context: BotContext) -> None:
    """Ask before deleting everything about the user (or the group or channel identity they write as); with
    /forget this, in reply to a photo, delete that one photo (its sender's, or an operator's, to ask)."""
    message = message_of(update)
    identity = where(message).user_id
    if [arg.lower() for arg in context.args or []] == ["this"]:
        await context.albums.settled(message.chat_id, identity)  # their album still being looked at lands first
        await reply(message, await records.forget_photo(context.services, where(message), replied_message_id(message)))
        return
    _ = await context.speaking_to(where(message))
    just_this = "\n\n" + _(JUST_THIS) if replied_to(message) is not None else ""
    keyboard = InlineKeyboardMarkup(
        [
            [
                InlineKeyboardButton(_("Yes, delete everything"), callback_data=f"forget:yes:{identity}"),
                InlineKeyboardButton(_("Cancel"), callback_data=f"forget:no:{identity}"),
            ]
        ]
    )
    identity_chat = message.sender_chat if writes_as_chat(message) else None
    if identity_chat is not None:
        name = identity_chat.title or _("this identity")
        await reply(message, _(ANONYMOUS_FORGET, name=name) + just_this, reply_markup=keyboard)
        return
    await reply(
        message,
        _(
            "This deletes every photo you sent me, our conversations in every chat and your "
            "settings. It can't be undone. Are you sure?"
        )
        + just_this,
        reply_markup=keyboard,
    )


async def forget_button(update: Update, context: BotContext) -> None:
    """The answer to /forget's question: only the person asked, or an admin of the identity they wrote as."""
    query, data, chat = button_press(update)
    parsed = FORGET_DATA.fullmatch(data)
    if parsed is None:  # not a button the bot made: the client wrote it
        log.info("ignored a /forget press with data %r", data[:64])
        await query.answer()
        return
    choice, identity = parsed["choice"], int(parsed["identity"])
    presser = query.from_user.id
    _ = await context.speaking_to(Where(chat.id, ChatKind(chat.type), presser, query.from_user.language_code))
    if not await _may_forget(context, identity, presser):
        await query.answer(_("This question was for someone else."), show_alert=True)
        return
    await query.answer()
    if choice != "yes":
        await query.edit_message_text(_("Cancelled: I kept everything."))
        return
    order = context.application.update_processor
    if identity != presser and isinstance(order, PerUserOrder):  # the press waited in the presser's queue
        await order.settled(identity, update.update_id)  # others' work in flight as this identity lands first
    await context.albums.settled_sender(identity)  # album photos still being looked at land first
    removed = await records.forget(context.services, identity)
    # Said in the language read before the forgetting: a private chat's own setting goes with everything else
    await query.edit_message_text(
        _(
            "Done. I deleted {images} photos and {turns} messages, and everything else I knew about you. "
            "Backups are covered too: if my database is ever restored from one, I forget you again.",
            images=removed.images,
            turns=removed.turns,
        )
    )
