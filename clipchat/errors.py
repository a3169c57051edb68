"""Errors whose message tells someone what to do next.

    ClipchatError                 user_message (for people) and detail (for logs)
    ├── UserError                 the person in the chat can act on it: the bot shows user_message
    │   ├── InvalidInput          what they sent cannot work (BadImage, too few labels)
    │   ├── Busy                  nothing wrong with it: try again in a moment
    │   │   ├── TooSlow           a model call ran past its deadline
    │   │   └── StorageDown       the database is unreachable through every retry, or full
    │   └── Unavailable           what it points to cannot be fetched (an expired or deleted file)
    └── OperatorError             whoever runs the bot must act: the CLI prints detail, the bot logs it
        ├── NotFound              a model, file or vocabulary that resolves to nothing (ModelNotFound)
        └── InvalidConfig         settings, model sets or options that cannot work (InvalidOptions, ...)

Everything else is a bug and goes to the bot's one error handler with its traceback.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from .i18n import N_, translator


class ClipchatError(Exception):
    """Base of every error that carries a message written for people."""

    user_message = N_("Something went wrong.")

    def __init__(
        self, user_message: str | None = None, *, detail: str | None = None, params: Mapping[str, object] | None = None
    ) -> None:
        # `user_message` is the English text, with {name} placeholders when `params` fill them in; marked with
        # N_ (clipchat.i18n) where it is written, it is said in the reader's language by `said_in`.
        self.message_id = user_message if user_message is not None else type(self).user_message
        self.params = dict(params or {})
        self.user_message = self.message_id.format(**self.params) if self.params else self.message_id
        # `detail` is for logs and operators; it may name files or formats.
        self.detail = detail or self.user_message
        super().__init__(self.detail)

    def said_in(self, language: str | None) -> str:
        """`user_message` in the reader's language."""
        return translator(language)(self.message_id, **self.params)

    def __reduce__(self) -> tuple[Callable[..., ClipchatError], tuple[type[ClipchatError], dict[str, Any]]]:
        # Subclasses take other arguments than `args`: rebuild from the attributes, so errors
        # cross process boundaries (Ray Serve replicas) intact.
        return _rebuild, (type(self), self.__dict__)


def _rebuild(cls: type[ClipchatError], state: dict[str, Any]) -> ClipchatError:
    error = cls.__new__(cls)
    Exception.__init__(error, state.get("detail", ""))
    error.__dict__.update(state)
    return error


class UserError(ClipchatError):
    """Shown as it is to the person whose message caused it."""


class InvalidInput(UserError, ValueError):
    """What the user sent cannot work; the message says what would."""


class Busy(UserError):
    user_message = N_("I'm looking at a lot of photos right now. Please try again in a minute.")


class TooSlow(Busy):
    user_message = N_("That took me too long, so I stopped: I'm very busy right now. Please try again in a minute.")


class StorageDown(Busy):
    user_message = N_(
        "I can't use my memory (the database) right now, so I may not remember this. Please try again in a minute."
    )


class Unavailable(UserError):
    user_message = N_(
        "I couldn't fetch that file from Telegram: it may have expired or been deleted. Could you send it again?"
    )


class OperatorError(ClipchatError):
    """Configuration the operator must fix; people in chats only hear that something went wrong."""


class NotFound(OperatorError, LookupError):
    """A name or path that resolves to nothing; the message lists what would."""


class ModelNotFound(NotFound):
    """A model set, model, checkpoint or vocabulary that does not exist."""


class InvalidConfig(OperatorError, ValueError):
    """Settings, files or options that exist but cannot work."""


class BadImage(InvalidInput):
    """The bytes are not an image we can look at; `reason` says why, for metrics and logs."""

    def __init__(
        self, reason: str, user_message: str, *, detail: str | None = None, params: Mapping[str, object] | None = None
    ) -> None:
        self.reason = reason
        super().__init__(user_message, detail=detail, params=params)
