"""Errors whose message tells a person what to do next.

Handlers show `user_message` as it is; everything else is a bug and goes to the
global error handler with its traceback.
"""

from __future__ import annotations


class ClipchatError(Exception):
    """Base of every error that carries a message written for people."""

    user_message = "Something went wrong."

    def __init__(self, user_message: str | None = None, *, detail: str | None = None) -> None:
        if user_message is not None:
            self.user_message = user_message
        # `detail` is for logs and operators; it may name files or formats.
        self.detail = detail or self.user_message
        super().__init__(self.detail)


class BadImage(ClipchatError):
    """The bytes are not an image we can look at; `reason` says why, for metrics and tests."""

    def __init__(self, reason: str, user_message: str, *, detail: str | None = None) -> None:
        self.reason = reason
        super().__init__(user_message, detail=detail)


class ModelNotFound(ClipchatError):
    """A model name or path that resolves to nothing; the message lists what would."""


class InvalidOptions(ClipchatError, ValueError):
    """Options that cannot work together, rejected before any model runs."""
