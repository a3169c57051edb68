"""Operators' logs: CLIPCHAT_LOG_LEVEL and CLIPCHAT_LOG_FORMAT, with the bot token in neither format."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime

import pytest

from tests.conftest import BOT_TOKEN
from tests.test_cli import clipchat

# The logging set-up `clipchat` runs before any command, then the token as the bot meets it: in a message,
# in the arguments, in a traceback, and in the HTTP client's request lines (every Bot API URL holds it).
SCRIPT = """
import logging, sys
import httpx
from bot.adapter.redaction import redact_token_in_logs
from bot.ops.logs import configure_logging, read_log_settings

token = sys.argv[1]
configure_logging(read_log_settings(), verbose="-v" in sys.argv)
redact_token_in_logs(token)
logging.getLogger("httpx").setLevel(logging.INFO)
log = logging.getLogger("clipchat.check")
log.info("an info line")
log.warning(f"a message that holds {token}")
log.warning("arguments that hold %s", token)
try:
    raise RuntimeError(f"https://api.telegram.org/bot{token}/getFile failed")
except RuntimeError:
    log.exception("a traceback")
with httpx.Client(transport=httpx.MockTransport(lambda request: httpx.Response(200))) as client:
    client.get(f"https://api.telegram.org/bot{token}/getMe")
"""


def log_lines(*flags: str, **settings: str) -> str:
    env = {key: value for key, value in os.environ.items() if not key.startswith("CLIPCHAT_")}
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, BOT_TOKEN, *flags],
        capture_output=True,
        text=True,
        timeout=60,
        env={**env, **settings},
    )
    assert result.returncode == 0, result.stderr
    return result.stderr


@pytest.mark.parametrize("form", ["text", "json"])
def test_the_token_never_reaches_the_logs_in_either_format(form: str) -> None:
    logs = log_lines(CLIPCHAT_LOG_FORMAT=form, CLIPCHAT_LOG_LEVEL="info")
    assert BOT_TOKEN.split(":")[1] not in logs
    assert logs.count("<bot-token>") == 4, logs  # message, arguments, traceback, request line
    assert "an info line" in logs
    if form == "text":
        assert "RuntimeError: https://api.telegram.org/bot<bot-token>/getFile failed" in logs
        return
    records = [json.loads(line) for line in logs.splitlines()]  # every line is one JSON object
    assert [r["level"] for r in records] == ["INFO", "WARNING", "WARNING", "ERROR", "INFO"]
    assert {"time", "level", "logger", "message"} <= set(records[0])
    assert datetime.fromisoformat(records[0]["time"]).utcoffset().total_seconds() == 0  # UTC
    failed = records[3]
    assert failed["message"] == "a traceback" and failed["logger"] == "clipchat.check"
    assert failed["exception"].startswith("Traceback") and "bot<bot-token>/getFile" in failed["exception"]
    assert records[4]["logger"] == "httpx" and "bot<bot-token>/getMe" in records[4]["message"]


def test_log_level_hides_info_and_verbose_brings_it_back() -> None:
    quiet = log_lines(CLIPCHAT_LOG_LEVEL="WARNING")
    assert "an info line" not in quiet and "arguments that hold" in quiet
    assert "an info line" in log_lines("-v", CLIPCHAT_LOG_LEVEL="WARNING")  # -v: INFO or more verbose


# What python-telegram-bot and the HTTP client log at DEBUG: an update as it arrives, a request's parameters,
# and a request line with a secret_token in its query (a secret this process was never told).
CONTENT_SCRIPT = """
import logging, sys
from bot.adapter.redaction import redact_token_in_logs
from bot.ops.logs import configure_logging, read_log_settings

configure_logging(read_log_settings())
redact_token_in_logs(sys.argv[1])
update = {"update_id": 7, "message": {"text": "my neighbour keeps bees", "caption": None}}
logging.getLogger("telegram.ext.Application").debug("Processing update %s", update)
logging.getLogger("telegram.ext.ExtBot").debug(
    "Calling Bot API endpoint `%s` with parameters `%s`", "setWebhook", {"url": "u", "secret_token": "hush-1"}
)
logging.getLogger("httpx").warning("HTTP Request: GET https://example.org/setWebhook?url=u&secret_token=hush-2 ok")
logging.getLogger("clipchat.check").debug("plain %s", "words of our own")
"""


@pytest.mark.parametrize("content", ["", "true"])
def test_debug_lines_hold_no_secret_token_and_words_only_with_log_content(content: str) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("CLIPCHAT_")}
    settings = {"CLIPCHAT_LOG_LEVEL": "DEBUG"} | ({"CLIPCHAT_LOG_CONTENT": content} if content else {})
    result = subprocess.run(
        [sys.executable, "-c", CONTENT_SCRIPT, BOT_TOKEN],
        capture_output=True,
        text=True,
        timeout=60,
        env={**env, **settings},
    )
    assert result.returncode == 0, result.stderr
    logs = result.stderr
    assert "hush" not in logs and "setWebhook?url=u&secret_token=<webhook-secret> ok" in logs, logs
    assert "Calling Bot API endpoint `setWebhook`" in logs and "words of our own" in logs
    assert ("my neighbour keeps bees" in logs) == bool(content), logs


@pytest.mark.parametrize("setting", ["CLIPCHAT_LOG_LEVEL=LOUD", "CLIPCHAT_LOG_FORMAT=xml"])
def test_a_bad_log_setting_is_one_line(setting: str, monkeypatch: pytest.MonkeyPatch) -> None:
    name, value = setting.split("=")
    monkeypatch.setenv(name, value)
    result = clipchat("env-example")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and name in result.stderr and value in result.stderr
