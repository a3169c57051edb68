"""The webhook server: Telegram's updates as HTTP POSTs, each checked on its headers before its body is read.

Why not python-telegram-bot's own server (`Application.run_webhook`): it reads a request's whole body, up
to Tornado's 100 MB default, before it looks at the secret header, and compares the secret with `!=`.
Thirty strangers posting 100 MB each at once took 5.9 GB of the bot's memory (the fault-table test).
This server is a Tornado handler with `stream_request_body` (Tornado comes with PTB's `webhooks` extra):
`prepare()` runs on the headers alone and refuses with 403 unless the secret matches
(`hmac.compare_digest`), and with 413 a Content-Length over `MAX_BODY`. Only a request that passed keeps
its body, read in Tornado's 64 KiB pieces, and a chunked body is cut off with 413 once it passes
`MAX_BODY`. A refused body is never kept: one that declares more than `MAX_BODY` is not read (the answer
goes out at once and the connection closes), a smaller one is read and dropped, so the client hears a
plain 403 (Telegram's getWebhookInfo shows it, should the secret ever differ). Updates go to
`application.update_queue`, where PTB's own server puts them (PTB's "custom webhook" pattern), and
`run_webhook` does what `Application.run_webhook` did around them.

No TLS here: clipchat listens on plain HTTP behind a reverse proxy that terminates TLS (docs/operating.md).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import signal
from http import HTTPStatus
from urllib.parse import urlparse

import tornado.web
from telegram import Update
from telegram.ext import Application, ExtBot
from tornado.httpserver import HTTPServer

from clipchat.errors import OperatorError

from .redaction import SECRET_MARK, redact_in_logs

log = logging.getLogger(__name__)

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
# Updates are JSON text: photos and files arrive as ids, a message's text is at most 4,096 characters and a
# caption 1,024, so even a long message quoting another, with its entities, is tens of kilobytes. A MiB
# leaves ten times that and bounds what one request may hold.
MAX_BODY = 2**20


class WebhookPortUnavailable(OperatorError):
    """The webhook server cannot listen on the address and port it was given."""


class WebhookServer:
    """Serves `url`'s path on `listen`:`port` and registers `url` with Telegram, with `secret` (`start`)."""

    def __init__(self, application: Application, url: str, secret: str) -> None:
        self.application = application
        self.url = url
        self.path = urlparse(url).path.rstrip("/") or "/"
        self.secret = secret.encode()
        redact_in_logs(secret, SECRET_MARK)  # PTB logs setWebhook's parameters at DEBUG
        routes = [(r".*", _UpdateHandler, {"server": self})]  # every path: none is read before `prepare`
        self._http = HTTPServer(tornado.web.Application(routes, log_function=_log_request))

    async def start(self, listen: str, port: int) -> None:
        """Listen, then tell Telegram where to post (so the first update finds the server up)."""
        try:
            self._http.listen(port, address=listen)
        except OSError as error:  # in use, not an address of this machine, a privileged port
            raise WebhookPortUnavailable(
                detail=f"cannot serve the webhook on {listen}:{port} ({error.strerror or error}): "
                "choose a free port (--port, CLIPCHAT_WEBHOOK_PORT) or fix --listen (CLIPCHAT_WEBHOOK_LISTEN)"
            ) from None
        await self.application.bot.set_webhook(
            self.url, secret_token=self.secret.decode(), allowed_updates=Update.ALL_TYPES
        )

    async def stop(self) -> None:
        self._http.stop()
        await self._http.close_all_connections()


def run_webhook(application: Application, url: str, listen: str, port: int, secret: str) -> None:
    """What `Application.run_webhook` does, with this server: start the application, serve until SIGINT or
    SIGTERM, stop it. A signal during start-up (the models loading) stops it there."""
    asyncio.run(_serve(application, WebhookServer(application, url, secret), listen, port))


async def _serve(application: Application, server: WebhookServer, listen: str, port: int) -> None:
    main = asyncio.current_task()
    assert main is not None
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, main.cancel)
    try:
        await application.initialize()
        if application.post_init:
            await application.post_init(application)
        await server.start(listen, port)
        await application.start()
        await asyncio.Event().wait()  # until a signal cancels it
    except asyncio.CancelledError:
        main.uncancel()  # the signal's: stopping is what it asked for
    finally:
        await server.stop()
        if application.running:
            await application.stop()
            if application.post_stop:
                await application.post_stop(application)
        await application.shutdown()
        if application.post_shutdown:
            await application.post_shutdown(application)


def _log_request(handler: tornado.web.RequestHandler) -> None:
    """Each request at DEBUG: a flood of refusals must not flood the log (PTB's server logged none)."""
    log.debug(
        "%d %s %s (%s)", handler.get_status(), handler.request.method, handler.request.path, handler.request.remote_ip
    )


@tornado.web.stream_request_body
class _UpdateHandler(tornado.web.RequestHandler):
    """One POST from Telegram: headers checked in `prepare`, body gathered in `data_received`, queued in `post`."""

    SUPPORTED_METHODS = ("POST",)  # others: 405, before the body too

    def initialize(self, server: WebhookServer) -> None:
        self.server = server
        self.body: bytearray | None = bytearray()  # None: refused while it was arriving
        self.received = 0
        self.refusal: HTTPStatus | None = None

    def prepare(self) -> None:
        """The answer, on the headers alone, to a request that is not Telegram's or is too large. A refused
        body of at most MAX_BODY is read and dropped, so that the client hears the answer on a connection it
        can reuse; a larger one is not read at all: the answer goes out at once and the connection closes."""
        length = self.request.headers.get("Content-Length")
        if length is not None and not (length.strip().isascii() and length.strip().isdigit()):
            raise tornado.web.HTTPError(HTTPStatus.BAD_REQUEST)
        # Tornado decodes header values as Latin-1: encoding them back gives the bytes that were sent
        token = self.request.headers.get(SECRET_HEADER, "").encode("latin-1")
        if (self.request.path.rstrip("/") or "/") != self.server.path:
            self.refusal = HTTPStatus.NOT_FOUND
        elif not hmac.compare_digest(token, self.server.secret):
            self.refusal = HTTPStatus.FORBIDDEN
        if length is not None and int(length) > MAX_BODY:
            raise tornado.web.HTTPError(self.refusal or HTTPStatus.REQUEST_ENTITY_TOO_LARGE)

    def data_received(self, chunk: bytes) -> None:
        if self.body is None:  # cut off below: Tornado closes the connection once the answer is out
            return
        self.received += len(chunk)
        if self.received > MAX_BODY:  # only a chunked body gets here: Content-Length was checked
            self.body = None
            self.send_error(self.refusal or HTTPStatus.REQUEST_ENTITY_TOO_LARGE)
        elif self.refusal is None:
            self.body += chunk

    async def post(self) -> None:
        if self.refusal is not None:  # its body, small, was dropped as it came
            raise tornado.web.HTTPError(self.refusal)
        bot = self.server.application.bot
        try:
            update = Update.de_json(json.loads(self.body or b""), bot)
        except Exception as error:  # with the right secret: Telegram's, but not an update this PTB can read
            log.warning("webhook: a request with the secret was not an update: %s: %s", type(error).__name__, error)
            raise tornado.web.HTTPError(HTTPStatus.BAD_REQUEST) from None
        if isinstance(bot, ExtBot):
            bot.insert_callback_data(update)  # as PTB's server does (arbitrary callback data, when on)
        await self.server.application.update_queue.put(update)

    def write_error(self, status_code: int, **kwargs) -> None:
        self.finish()  # the status says it; no HTML page
