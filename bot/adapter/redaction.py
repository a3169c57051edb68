"""Keep the bot token out of every log line, whoever writes it (httpx logs request URLs, which hold it)."""

from __future__ import annotations

import logging

MARK = "<bot-token>"  # what the token reads as in logs


class RedactToken(logging.Filter):
    def __init__(self, secret: str) -> None:
        super().__init__()
        self.secret = secret

    def filter(self, record: logging.LogRecord) -> bool:
        # Freeze the message now: libraries log mutable objects that may hold the token only later
        # (PTB's getFile result gains the download URL after it is logged).
        record.msg, record.args = record.getMessage().replace(self.secret, MARK), None
        if record.exc_info:
            if not record.exc_text:
                record.exc_text = logging.Formatter().formatException(record.exc_info)
            # Only the text goes on, redacted below: a formatter that renders exc_info itself (the JSON
            # one does) would print the token again from the exception's own message.
            record.exc_info = None
        # The traceback, the stack and any `extra=` strings (the JSON format writes every extra field)
        for name, value in list(vars(record).items()):
            if isinstance(value, str) and self.secret in value:
                setattr(record, name, value.replace(self.secret, MARK))
        return True


def redact_token_in_logs(token: str) -> None:
    """Attach the filter to every root handler that lacks it (filters on handlers see records from all loggers).

    Idempotent: building the application again (tests, restarts) adds no second filter."""
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig()
    for handler in root.handlers:
        if not any(isinstance(f, RedactToken) and f.secret == token for f in handler.filters):
            handler.addFilter(RedactToken(token))
    logging.getLogger("httpx").setLevel(max(logging.WARNING, logging.getLogger("httpx").level))
