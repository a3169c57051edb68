"""The operators' commands (CLIPCHAT_ADMIN_IDS): /allow, /ban, /unban, /usage and /quota.

What they change is stored in SQL, so it holds for every bot process serving the bot and
survives restarts. A user is named by id (`/ban 123456`) or by replying to their message; a group
or channel by its id (`/ban -1001234567890`: everyone in it), and a channel people write as also by
replying to such a message. An anonymous admin is known only as their group, so a reply cannot
ban or allow them alone: the operator is told so and names the group by id if they mean it.
"""

from __future__ import annotations

import logging

from telegram import Message, Update

from clipchat.i18n import N_, Translator
from clipchat.kinds import ChatKind
from storage import AccessStatus, UsageKind, UsageScope

from ..core import quotas, records
from ..core.incoming import Where
from .context import BotContext
from .sending import reply
from .telegram_io import Named, Sender, message_of, named_by_id, named_by_message, replied_to, user_of, where

log = logging.getLogger(__name__)
ONLY_OPERATORS = N_("Only the bot's operators can do that.")
WHO = N_("Name the user by id (/{command} 123456789), or reply to one of their messages with /{command}.")
QUOTA_HELP = N_(
    "Set this chat's daily budget: /quota photos 500 or /quota questions default. For another chat "
    "(a private chat's id is its user's): /quota -1001234567890 photos 500. 0 means no limit."
)
HELP = N_(
    "Operator commands:\n/allow ID - serve this user even when allow-lists are set\n"
    "/ban ID - ignore this user, or this group or channel (a negative id), everywhere\n"
    "/unban ID - back to the usual rules\n"
    "/usage [ID] - today's use of a user or chat, or the busiest ones\n"
    "/quota [CHAT] photos|questions N|default - a chat's daily budget\n/stats - what the database holds\n"
    "Or reply to someone's message with /allow, /ban, /unban or /usage."
)
ALLOWED = N_("{user} is allowed now, in every chat, whatever the allow-lists say.")
BANNED = N_("{user} is banned: I'll ignore everything they send, in every chat, until /unban {user}.")
ALLOWED_CHANNEL = N_(
    "The channel {name} ({user}) is allowed now: its posts and everything sent as it, in every chat, whatever "
    "the allow-lists say."
)
BANNED_CHANNEL = N_(
    "The channel {name} ({user}) is banned: I'll ignore its posts and everything sent as it, in every chat, "
    "until /unban {user}."
)
ALLOWED_CHAT = N_(
    "Chat {user} is allowed now: everyone in that group or channel, and everything sent as it, whatever the "
    "allow-lists say."
)
BANNED_CHAT = N_(
    "Chat {user} is banned: I'll ignore that group or channel, everyone in it and everything sent as it, in "
    "every chat, until /unban {user}."
)
GROUP_ITSELF = N_(
    "That message is from an anonymous admin of {name}: Telegram shows them only as the group itself, so I "
    "can't tell that admin apart from the group. /{command} {user} would apply to the whole group, everyone "
    "in it: send that if you mean it."
)
SHARED_ACCOUNT = N_(
    "{user} is an account Telegram shows for many senders at once (anonymous admins, people writing as a "
    "channel), so I won't /{command} it. Name the group or channel by its id instead."
)
IS_OPERATOR = N_("{user} is an operator: take them out of CLIPCHAT_ADMIN_IDS first.")
UNBANNED = N_("{user} is back to the usual rules.")
USED = {"photos": N_("photos: {used} of {limit}"), "questions": N_("questions: {used} of {limit}")}
USED_FREELY = {"photos": N_("photos: {used} (no limit)"), "questions": N_("questions: {used} (no limit)")}
BUSIEST = {"photos": N_("{subject}: {count} photos"), "questions": N_("{subject}: {count} questions")}
STATUS = {"banned": N_("Banned."), "allowed": N_("Allowed by an operator.")}
BUDGET_SAVED = {
    "photos": N_("Saved: the daily budget of photos in chat {chat} is now {budget}."),
    "questions": N_("Saved: the daily budget of questions in chat {chat} is now {budget}."),
}
DEFAULT_BUDGET, NO_LIMIT, A_DAY = N_("the configured default"), N_("no limit"), N_("{limit} a day")


def _is_operator(message: Message, context: BotContext) -> bool:
    return message.from_user is not None and message.from_user.id in context.services.settings.admin_ids


def _target(message: Message, args: list[str]) -> Named | None:
    """Whom the arguments name by id, else the author of the message replied to."""
    if args:
        try:
            return named_by_id(int(args[0]))
        except ValueError:
            return None
    replied = replied_to(message)
    return named_by_message(replied) if replied is not None else None


async def _operator(update: Update, context: BotContext) -> Translator | None:
    """The catalog to answer an operator in; None (after saying so) for anyone else."""
    message = message_of(update)
    _ = await context.speaking_to(where(message))
    if not _is_operator(message, context):
        await reply(message, _(ONLY_OPERATORS))
        return None
    return _


async def _operator_and_target(update: Update, context: BotContext, command: str) -> tuple[Translator, Named] | None:
    """The operator's catalog and whom they named, after telling anyone else (and an operator who named
    nobody) why not."""
    _ = await _operator(update, context)
    if _ is None:
        return None
    message = message_of(update)
    target = _target(message, context.args or [])
    if target is None:
        await reply(message, _(WHO, command=command))
        return None
    return _, target


# command -> (what it stores, what it says of each kind of sender, the log's verb)
ACCESS_COMMANDS = {
    "allow": (
        AccessStatus.ALLOWED,
        {Sender.USER: ALLOWED, Sender.CHANNEL: ALLOWED_CHANNEL, Sender.CHAT: ALLOWED_CHAT},
        "allowed",
    ),
    "ban": (
        AccessStatus.BANNED,
        {Sender.USER: BANNED, Sender.CHANNEL: BANNED_CHANNEL, Sender.CHAT: BANNED_CHAT},
        "banned",
    ),
    "unban": (None, {}, "reset the access of"),
}


async def _set_access(update: Update, context: BotContext, command: str) -> None:
    named = await _operator_and_target(update, context, command)
    if named is None:
        return
    _, target = named
    status, says, verb = ACCESS_COMMANDS[command]
    message, operator = message_of(update), user_of(update).id
    if status is not None and target.sender == Sender.GROUP_ITSELF:  # the whole group, by a slip of the reply
        await reply(message, _(GROUP_ITSELF, name=target.title or target.id, user=target.id, command=command))
        return
    if status is not None and target.sender == Sender.SHARED:  # every anonymous admin or channel at once
        await reply(message, _(SHARED_ACCOUNT, user=target.id, command=command))
        return
    if status == AccessStatus.BANNED and target.id in context.services.settings.admin_ids:
        await reply(message, _(IS_OPERATOR, user=target.id))
        return
    await quotas.set_user_access(context.services, target.id, status, operator)
    log.info("operator %s %s %s %s", operator, verb, target.sender, target.id)
    said = UNBANNED if status is None else says[target.sender]
    await reply(message, _(said, user=target.id, name=target.title or target.id))


async def allow(update: Update, context: BotContext) -> None:
    """/allow ID: serve this user even where allow-lists would refuse them; lifts a ban."""
    await _set_access(update, context, "allow")


async def ban(update: Update, context: BotContext) -> None:
    """/ban ID: ignore everything this user sends, or everything in and sent as this group or channel, in
    every chat."""
    await _set_access(update, context, "ban")


async def unban(update: Update, context: BotContext) -> None:
    """/unban ID: forget what operators said about this user; the settings' allow-lists apply again."""
    await _set_access(update, context, "unban")


def _line(report: quotas.UsageReport, _: Translator) -> str:
    """'photos: 3 of 300, questions: 0 of 600. Banned.'"""
    used = ", ".join(
        _(USED[kind], used=report.used[kind], limit=report.limits[kind])
        if report.limits[kind]
        else _(USED_FREELY[kind], used=report.used[kind])
        for kind in report.used
    )
    return used + "." + (" " + _(STATUS[report.status]) if report.status in STATUS else "")


async def usage(update: Update, context: BotContext) -> None:
    """/usage ID: a user's (or chat's, by its negative id) use today; /usage alone: this group, or the busiest."""
    _ = await _operator(update, context)
    if _ is None:
        return
    message, services = message_of(update), context.services
    args = context.args or []
    if args and args[0].lower() == "help":
        await reply(message, _(HELP))
        return
    named = _target(message, args)
    if named is None and args:
        await reply(message, _(WHO, command="usage"))
        return
    if named is not None:
        target = named.id
        scope = UsageScope.CHAT if target < 0 else UsageScope.USER
        report = await quotas.usage_of(services, scope, target, ChatKind.GROUP if target < 0 else ChatKind.PRIVATE)
        await reply(message, _("{subject} today: {usage}", subject=target, usage=_line(report, _)))
        return
    if message.chat.type != ChatKind.PRIVATE:
        report = await quotas.usage_of(services, UsageScope.CHAT, message.chat_id, ChatKind(message.chat.type))
        await reply(message, _("This chat today: {usage}", usage=_line(report, _)))
        return
    lines = [_("Busiest today (UTC):")]
    for scope, title in ((UsageScope.USER, _("People")), (UsageScope.CHAT, _("Groups and channels"))):
        rows = await quotas.heaviest(services, scope)
        lines.append(
            title
            + ": "
            + (
                "; ".join(_(BUSIEST[kind], subject=subject, count=count) for subject, kind, count in rows)
                or _("none yet")
            )
        )
    await reply(message, "\n".join(lines) + "\n\n" + _(HELP))


async def quota(update: Update, context: BotContext) -> None:
    """/quota [CHAT_ID] photos|questions N|default: a chat's own daily budget (0: no limit)."""
    _ = await _operator(update, context)
    if _ is None:
        return
    message = message_of(update)
    args = [arg.lower() for arg in context.args or []]
    here = where(message)
    if len(args) == 3:
        try:
            chat_id = int(args.pop(0))
        except ValueError:
            await reply(message, _(QUOTA_HELP))
            return
        here = Where(chat_id, ChatKind.PRIVATE if chat_id > 0 else ChatKind.SUPERGROUP, here.user_id)
    if len(args) != 2 or args[0] not in tuple(UsageKind) or not (args[1] == "default" or args[1].isdigit()):
        await reply(message, _(QUOTA_HELP))
        return
    value = None if args[1] == "default" else int(args[1])
    await records.set_switch(context.services, here, f"daily_{args[0]}", value)
    log.info("operator %s set chat %s daily %s to %s", user_of(update).id, here.chat_id, args[0], value)
    budget = _(DEFAULT_BUDGET) if value is None else (_(NO_LIMIT) if value == 0 else _(A_DAY, limit=value))
    await reply(message, _(BUDGET_SAVED[args[0]], chat=here.chat_id, budget=budget))
