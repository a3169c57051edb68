"""How clipchat logs: CLIPCHAT_LOG_LEVEL and CLIPCHAT_LOG_FORMAT, read before any command runs.

`text` is one readable line per record; `json` is one JSON object per line (time in ISO 8601 UTC,
level, logger, message, and `exception` with the traceback when there is one) for log collectors,
written by python-json-logger. The bot token and the webhook secret are kept out of both by
`adapter/redaction.py`'s filter, which sits on the handler and so rewrites each record before either
formatter sees it; the same filter keeps what people write (texts, captions, the replies) out of the
libraries' DEBUG lines unless CLIPCHAT_LOG_CONTENT is true.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from pythonjsonlogger.json import JsonFormatter

from clipchat.errors import InvalidConfig

from ..adapter.redaction import show_content_in_logs

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_chosen_level = False  # whether the operator set CLIPCHAT_LOG_LEVEL (then no command lowers it)


class LogSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CLIPCHAT_", env_file=".env", extra="ignore")

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] | None = Field(
        None,
        description="DEBUG, INFO, WARNING or ERROR. Default: WARNING, but INFO for `clipchat run` and with "
        "-v (which never makes a chosen level less verbose).",
    )
    log_format: Literal["text", "json"] = Field(
        "text",
        description="text (one readable line per record) or json "
        "(one object per line: time, level, logger, "
        "message, exception).",
    )
    log_content: bool = Field(
        False,
        description="true writes what people send and the bot's replies (texts, captions: python-telegram-bot's "
        "and the database driver's DEBUG lines) into the log; false (the default) writes a placeholder "
        "instead. Secrets never reach the log either way.",
    )

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value):
        return value.strip().upper() or None if isinstance(value, str) else value

    @field_validator("log_format", mode="before")
    @classmethod
    def _lower(cls, value):
        return value.strip().lower() if isinstance(value, str) else value


def read_log_settings() -> LogSettings:
    """The settings, or InvalidConfig in one line that names the variable, its value and the valid ones."""
    try:
        return LogSettings()
    except ValidationError as error:
        problem = error.errors()[0]
        name = f"CLIPCHAT_{str(problem['loc'][0]).upper()}"
        valid = {"CLIPCHAT_LOG_LEVEL": ", ".join(LEVELS), "CLIPCHAT_LOG_FORMAT": "text, json"}.get(name, "true, false")
        raise InvalidConfig(detail=f"{name} must be one of {valid}, not {problem.get('input')!r}") from None


class JsonLines(JsonFormatter):
    """python-json-logger, with the time first, in UTC, as ISO 8601 with milliseconds."""

    def __init__(self) -> None:
        super().__init__(
            "{levelname}{name}{message}",
            style="{",
            json_ensure_ascii=False,
            rename_fields={"levelname": "level", "name": "logger", "exc_info": "exception", "stack_info": "stack"},
        )

    def add_fields(self, log_data: dict, record: logging.LogRecord, message_dict: dict) -> None:
        moment = datetime.fromtimestamp(record.created, tz=UTC)
        log_data["time"] = moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        super().add_fields(log_data, record, message_dict)


def configure_logging(settings: LogSettings, verbose: bool = False, stream=None) -> None:
    """One handler on the root logger (stderr unless `stream`), as logging.basicConfig would: nothing
    happens when the root logger has handlers already (clipchat run inside another program, or tests)."""
    global _chosen_level
    _chosen_level = settings.log_level is not None
    show_content_in_logs(settings.log_content)
    level = logging.getLevelName(settings.log_level or "WARNING")
    if verbose:  # -v: at least INFO, never less verbose than a chosen DEBUG
        level = min(level, logging.INFO)
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonLines() if settings.log_format == "json" else logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(level=level, handlers=[handler])


def report_progress() -> None:
    """For long-running commands (`clipchat run`): INFO lines say what they do, unless the operator chose a level."""
    root = logging.getLogger()
    if not _chosen_level:
        root.setLevel(min(root.level, logging.INFO))
