"""Sending that survives Telegram: long replies split, Markdown that falls back to plain text, words about a
spoiler photo kept behind spoilers, network errors retried, Telegram's flood limits kept, and chat actions
kept alive while the models work.

Flood control (429 RetryAfter) is PTB's `AIORateLimiter`'s job, with its own retries, and the spacing of
messages is `Allowance`'s; here only network blips are retried (never a RetryAfter, so the two never
multiply), with the project's one retry policy, as many times as the settings' `send_retries`, and no retry
starts after SEND_DEADLINE_S. A request that may have reached Telegram (written whole, then no answer in time)
is never sent again unless asking twice is harmless (getFile, a download): the Bot API has no way to say "this
is the same message", so a second sendMessage is a second message in the chat.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import httpx
from aiolimiter import AsyncLimiter
from telegram import Bot, LinkPreviewOptions, Message, MessageEntity, ReplyParameters
from telegram.constants import ChatAction, ParseMode
from telegram.error import BadRequest, NetworkError, RetryAfter, TelegramError, TimedOut

from clipchat.retrying import retrying

from ..core.text import Said, utf16_length
from .telegram_io import topic_of

log = logging.getLogger(__name__)
T = TypeVar("T")
SEND_DEADLINE_S = 30.0  # past it the reply is stale: the user has likely asked again
DRAFT_DEADLINE_S = 1.0  # a draft is stale sooner, and the answer may be waiting behind it
ACTION_REFRESH_S = 4.5  # Telegram shows a chat action for 5 seconds
NO_PREVIEWS = LinkPreviewOptions(is_disabled=True)
# Bot API methods that put no message in a chat. Telegram's flood limits count messages (about 30 a second in
# all, 20 a minute in one group): these neither wait for nor spend that allowance, which the replies need.
NOT_MESSAGES = frozenset({"sendChatAction", "getChat", "getChatMember", "getChatAdministrators", "getChatMemberCount"})
IDLE_GROUPS = 512  # past this many groups' limits kept, those with nothing spent are dropped


class Allowance:
    """Telegram's flood limits, as leaky buckets: `overall` messages a second to all chats together, and
    `per_group` a minute to one group or channel (0: no limit). Only messages spend them; one that finds no
    turn within `within` seconds is stale, and fails as a send that timed out."""

    def __init__(self, overall: float, per_group: float, within: float = SEND_DEADLINE_S) -> None:
        self.within = within
        self._everyone = AsyncLimiter(overall, 1) if overall else None
        self._per_group = per_group
        self._groups: dict[int | str, AsyncLimiter] = {}

    @staticmethod
    def counts(endpoint: str, chat_id: object) -> bool:
        """Whether a request is a message to a chat, which the limits count."""
        return chat_id is not None and endpoint not in NOT_MESSAGES

    async def wait_turn(self, endpoint: str, chat_id: object) -> None:
        """Wait until a message to `chat_id` may go, and spend its share; anything else goes at once."""
        if not self.counts(endpoint, chat_id):
            return
        group = self._group(chat_id, make=True)
        try:
            async with asyncio.timeout(self.within):
                if group is not None:
                    await group.acquire()
                if self._everyone is not None:
                    await self._everyone.acquire()
        except TimeoutError:  # behind that many messages the reply is stale: dropped as a timed-out send is
            raise TimedOut(f"no turn to send to {chat_id} within {self.within:g} s (flood limits)") from None

    def saturated(self, chat_id: int) -> bool:
        """Whether a message to `chat_id` would have to wait for its turn now."""
        if self._everyone is not None and not self._everyone.has_capacity():
            return True
        group = self._group(chat_id, make=False)
        return group is not None and not group.has_capacity()

    def _group(self, chat_id: object, make: bool) -> AsyncLimiter | None:
        key = _group_key(chat_id)
        if key is None or not self._per_group:
            return None
        limiter = self._groups.get(key)
        if limiter is None and make:
            if len(self._groups) > IDLE_GROUPS:
                for idle in [k for k, kept in self._groups.items() if kept.has_capacity(kept.max_rate)]:
                    del self._groups[idle]
            limiter = self._groups[key] = AsyncLimiter(self._per_group, 60)
        return limiter


def _group_key(chat_id: object) -> int | str | None:
    """The chat's key if it is a group or channel (a negative id, or an @username), else None."""
    with contextlib.suppress(ValueError, TypeError):
        chat_id = int(chat_id)  # type: ignore[call-overload]
    if isinstance(chat_id, str) or (isinstance(chat_id, int) and chat_id < 0):
        return chat_id
    return None


# Transport failures after which Telegram may have the request: it went out whole (or the connection broke
# while the answer was awaited) and no answer came. A pool, connect or write failure never left in one piece;
# an answer (a 502) is Telegram saying it did nothing.
_MAY_HAVE_ARRIVED = (httpx.ReadTimeout, httpx.ReadError, httpx.RemoteProtocolError, httpx.CloseError)


def is_network_blip(error: BaseException) -> bool:
    # BadRequest is a NetworkError subclass in PTB, but sending the same request again cannot help.
    return isinstance(error, NetworkError) and not isinstance(error, BadRequest)


def may_have_arrived(error: BaseException) -> bool:
    """Whether Telegram may have received (and acted on) the request that failed with `error`."""
    seen: set[int] = set()
    cause: BaseException | None = error
    while cause is not None and id(cause) not in seen:  # PTB raises its TimedOut/NetworkError from httpx's
        if isinstance(cause, _MAY_HAVE_ARRIVED):
            return True
        seen.add(id(cause))
        cause = cause.__cause__
    return False


async def with_retries(
    send: Callable[[], Awaitable[T]],
    retries: int = 3,
    what: str = "sending to Telegram",
    *,
    idempotent: bool = False,
) -> T:
    """Run `send`, retrying network errors (the rate limiter already waited out flood control). Unless asking
    twice is harmless (`idempotent`: a read), one that may have reached Telegram is raised, not sent again:
    a second copy of a message cannot be taken back, and the first most likely arrived."""

    def transient(error: BaseException) -> bool:
        if not is_network_blip(error):
            return False
        if not idempotent and may_have_arrived(error):
            log.warning("%s: no answer, but Telegram may have it: not sent again (%r)", what, error)
            return False
        return True

    async for attempt in retrying(
        transient, attempts=retries + 1, first_delay=1.0, max_delay=8.0, deadline=SEND_DEADLINE_S, what=what
    ):
        with attempt:
            result = await send()
    return result


def send_retries(bot: Bot) -> int:
    """The retries of a send the settings ask for (`send_retries`), kept by the bot's rate limiter."""
    return getattr(getattr(bot, "rate_limiter", None), "send_retries", 3)


def spoilers(said: Said) -> list[MessageEntity]:
    """Spoiler entities over the words `said` hides, at the UTF-16 offsets Telegram counts in."""
    return [
        MessageEntity(MessageEntity.SPOILER, utf16_length(said.text[:start]), utf16_length(said.text[start:end]))
        for start, end in said.hidden
    ]


async def reply(
    message: Message,
    text: str | Said,
    *,
    markdown: bool = False,
    previews: bool = True,
    retries: int | None = None,
    **kwargs,
) -> Message | None:
    """Reply to `message` with `text`, split to Telegram's limit; returns the first message sent. With
    `previews` off, no piece shows a preview of a link in it (words the bot repeats from someone). Words `text`
    hides go behind spoiler entities in whichever piece they land; such a reply is sent as plain text, never
    as Markdown, which would move the entities' offsets (and whose fallback would drop them)."""
    said = text if isinstance(text, Said) else Said(text)
    markdown = markdown and not said.hidden
    if retries is None:  # the settings' count, whichever handler replies
        retries = send_retries(message.get_bot())
    first = None
    for number, piece in enumerate(said.split()):
        extra = kwargs if number == 0 else {}  # a keyboard belongs to the first piece only
        if not previews:
            extra = {**extra, "link_preview_options": NO_PREVIEWS}
        if piece.hidden:
            extra = {**extra, "entities": spoilers(piece)}
        sent = await _send_piece(message, piece.text, markdown, retries, **extra)
        first = first or sent
    return first


async def _send_piece(message: Message, text: str, markdown: bool, retries: int, **kwargs) -> Message:
    quote = ReplyParameters(message_id=message.message_id, allow_sending_without_reply=True)
    # A reply lands in the topic of the message it quotes; should that message be gone (deleted meanwhile),
    # Telegram would post it in the forum's General: the topic is named too.
    kwargs = {"message_thread_id": topic_of(message), **kwargs}
    if markdown:
        try:
            return await with_retries(
                lambda: message.get_bot().send_message(
                    message.chat_id, text, parse_mode=ParseMode.MARKDOWN, reply_parameters=quote, **kwargs
                ),
                retries,
            )
        except BadRequest as error:
            if "parse" not in str(error).lower():
                raise
            log.info("Markdown did not parse (%s); sending as plain text", error)
    return await with_retries(
        lambda: message.get_bot().send_message(message.chat_id, text, reply_parameters=quote, **kwargs), retries
    )


async def send_draft(bot: Bot, chat_id: int, draft_id: int, said: Said) -> bool:
    """Show `said` as the reply being written in a private chat (Bot API 10.0's sendMessageDraft; a later draft
    with the same `draft_id` replaces it, animated), what it hides behind spoilers. Only while the chat's
    allowance has room, and never waited on longer than DRAFT_DEADLINE_S (flood control's wait included): a draft
    that does not go is logged and let go, and the reply that follows holds everything it said. False when one
    failed: the rest of this answer goes without, so a Telegram in trouble costs the answer one deadline at most."""
    if _saturated(bot, chat_id):  # replies are waiting their turn: a draft would only add to them
        log.debug("draft %s in chat %s skipped: the send allowance is spent", draft_id, chat_id)
        return True
    piece = said.split()[0]  # a draft is one message long; answers are a sentence or two
    try:
        async with asyncio.timeout(DRAFT_DEADLINE_S):
            await bot.send_message_draft(chat_id, draft_id, piece.text, entities=spoilers(piece) or None)
    except (TelegramError, TimeoutError) as error:
        log.info("draft %s in chat %s not shown, nor the rest of its answer's: %r", draft_id, chat_id, error)
        return False
    return True


@dataclass
class _Showing:
    bot: Bot  # held, so that no other bot takes its id while this is kept
    task: asyncio.Task | None = None
    holders: int = 0
    due: float = -math.inf  # time.monotonic() of the next action: the last one is on screen until then


# One indicator per (bot, chat, forum topic), however many handlers are working there; in a group or channel, at
# most one action every ACTION_REFRESH_S even as work ends and starts again (kept until then), for each is a
# request to Telegram, one more in a chat whose flood limit may answer with a 429 that holds back every chat. A
# private chat's is dropped when its work ends: the reply took the action off the screen. Telegram shows an
# action in the topic it names, so each topic of a forum gets its own.
_showing: dict[tuple[int, int, int | None], _Showing] = {}


def _saturated(bot: Bot, chat_id: int) -> bool:
    allowance = getattr(getattr(bot, "rate_limiter", None), "allowance", None)  # an ExtBot's, with ours
    return isinstance(allowance, Allowance) and allowance.saturated(chat_id)


async def _keep_showing(showing: _Showing, chat_id: int, action: str, topic: int | None) -> None:
    while True:
        wait = showing.due - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        showing.due = time.monotonic() + ACTION_REFRESH_S
        if _saturated(showing.bot, chat_id):  # replies are waiting their turn: "typing…" only adds to them
            continue
        try:
            await showing.bot.send_chat_action(chat_id, action, message_thread_id=topic)
        except (NetworkError, RetryAfter) as error:  # a missing 'typing…' must never cost the reply
            log.info("chat action not shown: %s", error)


@contextlib.asynccontextmanager
async def chat_action(
    bot: Bot, chat_id: int, action: str = ChatAction.TYPING, topic: int | None = None
) -> AsyncIterator[None]:
    """Show 'typing…' (or 'sending photo…') until the block ends, however long the models take, in the forum
    `topic` if one is given (Telegram shows a chat action in one topic); a chat (topic) where another handler is
    already showing one keeps that one."""
    now = time.monotonic()
    for faded in [key for key, kept in _showing.items() if not kept.holders and kept.due < now]:
        del _showing[faded]
    key = (id(bot), chat_id, topic)
    showing = _showing.get(key)
    if showing is None:
        showing = _showing[key] = _Showing(bot)
    if showing.task is None:
        showing.task = asyncio.create_task(_keep_showing(showing, chat_id, str(action), topic))
    showing.holders += 1
    try:
        yield
    finally:
        showing.holders -= 1
        if not showing.holders and showing.task is not None:
            task, showing.task = showing.task, None
            if _group_key(chat_id) is None and _showing.get(key) is showing:
                del _showing[key]
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):  # the cancellation we asked for
                await task
