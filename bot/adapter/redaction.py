"""Keep secrets, and what people write, out of every log line, whoever writes it.

Secrets: the bot token (httpx logs request URLs, which hold it) and the webhook secret (PTB logs setWebhook's
parameters at DEBUG), as `<bot-token>` and `<webhook-secret>`; a `secret_token` written with `=` or `:` reads
as `<webhook-secret>` even where the secret is not known here. People's words: at DEBUG python-telegram-bot
logs each update's JSON and each request's parameters (the texts and captions sent, and the replies), and
aiosqlite each statement with its parameters (the turns stored). Unless the operator asked for them
(CLIPCHAT_LOG_CONTENT, `show_content_in_logs`), the data those loggers pass as arguments reads as
`CONTENT_MARK`; their messages stay, so the log still says what was called and when.
"""

from __future__ import annotations

import logging
import re

MARK = "<bot-token>"  # what the token reads as in logs
SECRET_MARK = "<webhook-secret>"
CONTENT_MARK = "<content hidden: CLIPCHAT_LOG_CONTENT>"
# the loggers that log people's words as arguments at DEBUG (and those below them)
CONTENT_LOGGERS = ("telegram", "aiosqlite", "sqlalchemy.engine", "asyncpg")
_SECRET_TOKEN = re.compile(r"""(?i)(secret[_-]token['"]?\s*[=:]\s*['"]?)[^'"&\s,;)}\]]+""")
_PLAIN = (str, int, float, bool, type(None))
_show_content = False  # CLIPCHAT_LOG_CONTENT


def show_content_in_logs(show: bool) -> None:
    """Whether the content loggers' arguments reach the log (set from CLIPCHAT_LOG_CONTENT by `clipchat`)."""
    global _show_content
    _show_content = show


class Redact(logging.Filter):
    """On a handler: each secret in `secrets` (secret -> mark) replaced by its mark, in every part of a record."""

    def __init__(self, secrets: dict[str, str]) -> None:
        super().__init__()
        self.secrets = secrets

    def filter(self, record: logging.LogRecord) -> bool:
        if not _show_content and _from_content_logger(record.name):
            _hide_content(record)
        # Freeze the message now: libraries log mutable objects that may hold the token only later
        # (PTB's getFile result gains the download URL after it is logged).
        record.msg, record.args = self._redacted(record.getMessage()), None
        if record.exc_info:
            if not record.exc_text:
                record.exc_text = logging.Formatter().formatException(record.exc_info)
            # Only the text goes on, redacted below: a formatter that renders exc_info itself (the JSON
            # one does) would print the token again from the exception's own message.
            record.exc_info = None
        # The traceback, the stack and any `extra=` strings (the JSON format writes every extra field)
        for name, value in list(vars(record).items()):
            if isinstance(value, str) and name != "msg":
                redacted = self._redacted(value)
                if redacted != value:
                    setattr(record, name, redacted)
        return True

    def _redacted(self, text: str) -> str:
        for secret, mark in self.secrets.items():
            text = text.replace(secret, mark)
        return _SECRET_TOKEN.sub(rf"\g<1>{SECRET_MARK}", text)


def _from_content_logger(name: str) -> bool:
    return any(name == logger or name.startswith(logger + ".") for logger in CONTENT_LOGGERS)


def _hide_content(record: logging.LogRecord) -> None:
    """The record's data arguments (dicts, lists, updates, statements) as CONTENT_MARK; plain values stay."""
    if not isinstance(record.msg, str):
        record.msg, record.args = CONTENT_MARK, None
    elif isinstance(record.args, dict):
        record.args = {key: value if isinstance(value, _PLAIN) else CONTENT_MARK for key, value in record.args.items()}
    elif record.args:
        record.args = tuple(value if isinstance(value, _PLAIN) else CONTENT_MARK for value in record.args)


def redact_in_logs(secret: str, mark: str) -> None:
    """Redact `secret` as `mark` on every root handler (filters on handlers see records from all loggers).

    Idempotent: building the application again (tests, restarts) adds no second filter."""
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig()
    for handler in root.handlers:
        redact = next((f for f in handler.filters if isinstance(f, Redact)), None)
        if redact is None:
            handler.addFilter(redact := Redact({}))
        redact.secrets[secret] = mark


def redact_token_in_logs(token: str) -> None:
    """The bot token as `<bot-token>`; httpx's request lines (each URL holds the token) only at WARNING."""
    redact_in_logs(token, MARK)
    logging.getLogger("httpx").setLevel(max(logging.WARNING, logging.getLogger("httpx").level))
