"""The bot's side of the metrics (`clipchat.metrics`): updates by kind, replies and rate-limiter waits, and the
HTTP server Prometheus scrapes (CLIPCHAT_METRICS_PORT).

Replies and waits are measured in one place every request to Telegram passes: the rate limiter. It knows
the Bot API method (sendMessage, sendPhoto, editMessageCaption...), so a reply is counted once it was sent,
whichever handler sent it, and the time a request spent there beyond Telegram's own answer is the wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any
from wsgiref.simple_server import WSGIServer

from prometheus_client import start_http_server
from telegram import Update
from telegram.ext import AIORateLimiter, CommandHandler

from clipchat.errors import OperatorError
from clipchat.metrics import REGISTRY, REPLIES, SEND_WAIT, UPDATES

from .context import BotContext
from .sending import Allowance

log = logging.getLogger(__name__)
# Bot API methods that put something in front of people, and the kind they are counted as
REPLY_KINDS = {
    "sendMessage": "text",
    "sendPhoto": "photo",
    "sendDocument": "photo",
    "editMessageCaption": "edit_caption",
    "editMessageText": "edit_text",
    "answerCallbackQuery": "callback_answer",
}
_reply_kind: contextvars.ContextVar[str | None] = contextvars.ContextVar("reply_kind", default=None)


class MetricsPortUnavailable(OperatorError):
    """The metrics server could not listen where the settings say."""


class MetricsServer:
    """prometheus_client's own HTTP server for `REGISTRY`, on a thread of its own; off when `port` is None."""

    def __init__(self, address: str, port: int | None) -> None:
        self.address = address
        self.port = port
        self._serving: tuple[WSGIServer, threading.Thread] | None = None

    def start(self) -> None:
        if self.port is None or self._serving is not None:
            return
        try:
            self._serving = start_http_server(self.port, self.address, registry=REGISTRY)
        except OSError as error:  # in use, not an address of this machine, a privileged port
            raise MetricsPortUnavailable(
                detail=f"cannot serve metrics on {self.address}:{self.port} "
                f"({error.strerror or error}): choose a free port in "
                "CLIPCHAT_METRICS_PORT (or unset it to turn metrics off), "
                "or fix CLIPCHAT_METRICS_ADDRESS"
            ) from None
        log.info("metrics for Prometheus at http://%s:%d/metrics", self.address, self.port)

    async def stop(self) -> None:
        """Stop serving (a no-op when not started); waits at most a second or so for the server's thread."""
        serving, self._serving = self._serving, None
        if serving is None:
            return
        server, thread = serving
        await asyncio.to_thread(server.shutdown)  # returns once serve_forever's next poll (0.5 s) sees it
        server.server_close()
        thread.join(timeout=5)


class MeteredRateLimiter(AIORateLimiter):
    """PTB's `AIORateLimiter` for flood control (a 429's retry_after waited out, the request retried), with the
    spacing of messages done by `Allowance`, which spends Telegram's limits on messages only; counting what
    was sent (`clipchat_replies_total`) and how long each message waited for its turn and for flood control
    (`clipchat_send_wait_seconds`)."""

    def __init__(self, overall_max_rate: float, group_max_rate: float, max_retries: int = 0) -> None:
        super().__init__(overall_max_rate=0, group_max_rate=0, max_retries=max_retries)  # no spacing of its own
        self.allowance = Allowance(overall_max_rate, group_max_rate)
        self.send_retries = max_retries  # the settings' count, for network errors too (`sending.send_retries`)

    async def process_request(
        self,
        callback,
        args: Any,
        kwargs: dict[str, Any],
        endpoint: str,
        data: dict[str, Any],
        rate_limit_args: int | None,
    ):
        arrived = time.perf_counter()
        on_the_wire = 0.0  # time in the requests themselves, Telegram's answers (and refusals) included
        chat_id = data.get("chat_id")

        async def timed(*call_args, **call_kwargs):
            nonlocal on_the_wire
            await self.allowance.wait_turn(endpoint, chat_id)  # on every try: a retried message counts again
            started = time.perf_counter()
            try:
                return await callback(*call_args, **call_kwargs)
            finally:
                on_the_wire += time.perf_counter() - started

        try:
            result = await super().process_request(timed, args, kwargs, endpoint, data, rate_limit_args)
        finally:
            if self.allowance.counts(endpoint, chat_id):  # only messages are spaced; getFile and the like pass
                SEND_WAIT.observe(max(0.0, time.perf_counter() - arrived - on_the_wire))
        kind = REPLY_KINDS.get(endpoint)
        if kind is not None:
            REPLIES.labels(_reply_kind.get() or kind).inc()
        return result


@contextlib.contextmanager
def counted_as(kind: str) -> Iterator[None]:
    """Messages sent inside the block count as replies of `kind` (the error handler's apology: "error")."""
    token = _reply_kind.set(kind)
    try:
        yield
    finally:
        _reply_kind.reset(token)


class UpdateCounter:
    """The first handler of all (before the allow-lists): counts each update by its kind."""

    def __init__(self) -> None:
        self._commands: frozenset[str] | None = None

    async def __call__(self, update: Update, context: BotContext) -> None:
        if self._commands is None:  # read once the bot runs, so every module's commands are routed by then
            self._commands = frozenset(
                command
                for handlers in context.application.handlers.values()
                for handler in handlers
                if isinstance(handler, CommandHandler)
                for command in handler.commands
            )
        UPDATES.labels(update_kind(update, self._commands)).inc()


def update_kind(update: Update, commands: frozenset[str]) -> str:
    """A label for the update: one of a few fixed words, or `command_<name>` for a routed command."""
    if update.callback_query is not None:
        return "callback"
    if update.edited_message is not None or update.edited_channel_post is not None:
        return "edited"
    if update.channel_post is not None:
        return "channel_photo" if update.channel_post.photo else "channel_post"
    message = update.message
    if message is None:
        return "membership" if update.my_chat_member or update.chat_member else "other"
    if message.photo:
        return "album_photo" if message.media_group_id else "photo"
    if message.document is not None:
        image = (message.document.mime_type or "").startswith("image/")
        return "document_image" if image else "document"
    text = message.text or ""
    if text.startswith("/"):
        name = text[1:].split(maxsplit=1)[0].split("@", 1)[0].lower() if len(text) > 1 else ""
        return f"command_{name}" if name in commands else "command_other"
    return "text" if text else "other"
