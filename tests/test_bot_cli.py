"""`clipchat run` and `clipchat chat`, driven from the command line as an operator would."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sys
from pathlib import Path

from tests.bot_helpers import send_photo
from tests.conftest import BOT_TOKEN
from tests.fake_telegram import private, user
from tests.test_cli import clipchat


def command() -> list[str]:
    executable = shutil.which("clipchat")
    return [executable] if executable else [sys.executable, "-m", "bot.ops.cli"]


def bot_environment(telegram, world_dir: Path, tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("CLIPCHAT_", "TELEGRAM_"))}
    return {**env, "HF_HUB_OFFLINE": "1", "TELEGRAM_BOT_TOKEN": BOT_TOKEN, "CLIPCHAT_MODELS": str(world_dir),
            "CLIPCHAT_BASE_URL": telegram.base_url, "CLIPCHAT_BASE_FILE_URL": telegram.base_file_url,
            "CLIPCHAT_CACHE_DIR": str(tmp_path / "cache"), "DATABASE_URL": f"sqlite:///{tmp_path / 'bot.db'}",
            **extra}


async def test_clipchat_run_answers_a_photo_and_stops_cleanly(telegram, world_dir: Path, heldout, tmp_path: Path):
    process = await asyncio.create_subprocess_exec(
        *command(), "run", env=bot_environment(telegram, world_dir, tmp_path), cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    try:
        await telegram.wait_for(lambda: telegram.sent("setMyCommands"), timeout=180, what="the bot to start")
        send_photo(telegram, private(1), user(1), heldout[0].image)
        [reply] = await telegram.wait_replies(1, 1, timeout=60)
        assert "Tags:" in reply.text
    finally:
        process.send_signal(signal.SIGINT)
        output, _ = await asyncio.wait_for(process.communicate(), 60)
    log = output.decode()
    assert process.returncode == 0, log
    assert "clipchat is up as @clipchat_test_bot" in log
    assert BOT_TOKEN.split(":")[1] not in log


def test_clipchat_run_without_a_token_says_how_to_get_one(tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("CLIPCHAT_", "TELEGRAM_"))}
    import subprocess

    result = subprocess.run([*command(), "run"], capture_output=True, text=True, timeout=120, cwd=tmp_path,
                            env={**env, "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "@BotFather" in result.stderr and "/newbot" in result.stderr


def test_clipchat_chat_talks_about_a_photo(world_dir: Path, heldout, tmp_path: Path) -> None:
    import subprocess

    held = heldout[0]
    script = f"/photo {held.path}\nwhat colour is the {held.scene.shape}?\n/search {held.scene.caption}\n/quit\n"
    result = subprocess.run([*command(), "chat", "--models", str(world_dir)], input=script, capture_output=True,
                            text=True, timeout=300, cwd=tmp_path,
                            env={**os.environ, "HF_HUB_OFFLINE": "1", "CLIPCHAT_CACHE_DIR": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].lower().startswith(held.scene.caption.lower().rstrip("."))
    assert held.scene.colour in lines[2]
    assert str(held.path) in lines[3]


def test_run_and_chat_explain_themselves() -> None:
    for name in ("run", "chat"):
        result = clipchat(name, "--help")
        assert result.returncode == 0 and "--models" in result.stdout
