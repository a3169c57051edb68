"""Sending that survives Telegram: long replies split, Markdown that falls back to plain text, words about a
spoiler photo kept behind spoilers, network errors retried, and chat actions kept alive while the models work.

Flood control (429 RetryAfter) is PTB's `AIORateLimiter`'s job, with its own retries;
here only network blips are retried (never a RetryAfter, so the two never multiply), with the
project's one retry policy, and no retry starts after SEND_DEADLINE_S.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from telegram import Bot, LinkPreviewOptions, Message, MessageEntity, ReplyParameters
from telegram.constants import ChatAction, ParseMode
from telegram.error import BadRequest, NetworkError, RetryAfter

from clipchat.retrying import retrying

from ..core.text import Said, utf16_length

log = logging.getLogger(__name__)
T = TypeVar("T")
SEND_DEADLINE_S = 30.0  # past it the reply is stale: the user has likely asked again
ACTION_REFRESH_S = 4.5  # Telegram shows a chat action for 5 seconds
NO_PREVIEWS = LinkPreviewOptions(is_disabled=True)


def is_network_blip(error: BaseException) -> bool:
    # BadRequest is a NetworkError subclass in PTB, but sending the same request again cannot help.
    return isinstance(error, NetworkError) and not isinstance(error, BadRequest)


async def with_retries(send: Callable[[], Awaitable[T]], retries: int = 3, what: str = "sending to Telegram") -> T:
    """Run `send`, retrying network errors (the rate limiter already waited out flood control)."""
    async for attempt in retrying(
        is_network_blip, attempts=retries + 1, first_delay=1.0, max_delay=8.0, deadline=SEND_DEADLINE_S, what=what
    ):
        with attempt:
            result = await send()
    return result


def spoilers(said: Said) -> list[MessageEntity]:
    """Spoiler entities over the words `said` hides, at the UTF-16 offsets Telegram counts in."""
    return [
        MessageEntity(MessageEntity.SPOILER, utf16_length(said.text[:start]), utf16_length(said.text[start:end]))
        for start, end in said.hidden
    ]


async def reply(
    message: Message, text: str | Said, *, markdown: bool = False, previews: bool = True, retries: int = 3, **kwargs
) -> Message | None:
    """Reply to `message` with `text`, split to Telegram's limit; returns the first message sent. With
    `previews` off, no piece shows a preview of a link in it (words the bot repeats from someone). Words `text`
    hides go behind spoiler entities in whichever piece they land; such a reply is sent as plain text, never
    as Markdown, which would move the entities' offsets (and whose fallback would drop them)."""
    said = text if isinstance(text, Said) else Said(text)
    markdown = markdown and not said.hidden
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


@dataclass
class _Showing:
    task: asyncio.Task
    holders: int = 0


# One indicator per (bot, chat, action), however many handlers are working there: each action is a
# request through the same rate limiter as the replies, and a busy group's replies queued behind them.
_showing: dict[tuple[int, int, str], _Showing] = {}


@contextlib.asynccontextmanager
async def chat_action(bot: Bot, chat_id: int, action: str = ChatAction.TYPING) -> AsyncIterator[None]:
    """Show 'typing…' (or 'sending photo…') until the block ends, however long the models take."""

    async def keep_showing() -> None:
        while True:
            try:
                await bot.send_chat_action(chat_id, action)
            except (NetworkError, RetryAfter) as error:  # a missing 'typing…' must never cost the reply
                log.info("chat action not shown: %s", error)
            await asyncio.sleep(ACTION_REFRESH_S)

    key = (id(bot), chat_id, str(action))
    showing = _showing.get(key)
    if showing is None:
        showing = _showing[key] = _Showing(asyncio.create_task(keep_showing()))
    showing.holders += 1
    try:
        yield
    finally:
        showing.holders -= 1
        if not showing.holders:
            del _showing[key]
            showing.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):  # the cancellation we asked for
                await showing.task
