"""`clipchat run` and `clipchat chat`, driven from the command line as an operator would."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import sys
from pathlib import Path

from tests.bot_helpers import send_photo
from tests.conftest import BOT_TOKEN
from tests.fake_telegram import private, user


def command() -> list[str]:
    executable = shutil.which("clipchat")
    return [executable] if executable else [sys.executable, "-m", "bot.ops.cli"]


def bot_environment(telegram, world_dir: Path, tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("CLIPCHAT_", "TELEGRAM_"))}
    return {
        **env,
        "HF_HUB_OFFLINE": "1",
        "TELEGRAM_BOT_TOKEN": BOT_TOKEN,
        "CLIPCHAT_MODELS": str(world_dir),
        "CLIPCHAT_BASE_URL": telegram.base_url,
        "CLIPCHAT_BASE_FILE_URL": telegram.base_file_url,
        "CLIPCHAT_CACHE_DIR": str(tmp_path / "cache"),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'bot.db'}",
        **extra,
    }


@contextlib.asynccontextmanager
async def clipchat_run(telegram, world_dir: Path, tmp_path: Path, *args: str):
    """`clipchat run ARGS` against the fake server; on leaving, Ctrl-C, and the whole log in `logs`."""
    process = await asyncio.create_subprocess_exec(
        *command(),
        "run",
        *args,
        env=bot_environment(telegram, world_dir, tmp_path),
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    logs: list[str] = []
    try:
        yield process, logs
    finally:
        process.send_signal(signal.SIGINT)
        output, _ = await asyncio.wait_for(process.communicate(), 60)
        logs.append(output.decode())
    assert process.returncode == 0, logs[0]
    assert BOT_TOKEN.split(":")[1] not in logs[0]


async def test_clipchat_run_answers_a_photo_and_stops_cleanly(telegram, world_dir: Path, heldout, tmp_path: Path):
    async with clipchat_run(telegram, world_dir, tmp_path) as (_, logs):
        await telegram.wait_for(lambda: telegram.sent("setMyCommands"), timeout=180, what="the bot to start")
        send_photo(telegram, private(1), user(1), heldout[0].image)
        [reply] = await telegram.wait_replies(1, 1, timeout=60)
        assert "Tags:" in reply.text
    assert "clipchat is up as @clipchat_test_bot" in logs[0]


async def test_clipchat_run_webhook_registers_a_random_secret_and_refuses_requests_without_it(
    telegram, world_dir: Path, tmp_path: Path
) -> None:
    import aiohttp

    from tests.test_scale_out import free_port, wait_listening

    port = free_port()
    hook = f"http://127.0.0.1:{port}/hook"
    # No CLIPCHAT_WEBHOOK_SECRET in the environment: the runner must make one up.
    async with clipchat_run(
        telegram, world_dir, tmp_path, "--webhook", hook, "--listen", "127.0.0.1", "--port", str(port)
    ) as (process, logs):
        [registered] = await telegram.wait_for(lambda: telegram.sent("setWebhook"), timeout=180, what="the webhook")
        secret = registered.params.get("secret_token") or ""
        assert len(secret) >= 32 and secret.isascii(), "the runner must register a random secret of its own"
        await wait_listening(port, process)
        update = {"update_id": 1, "message": telegram.message(private(9), user(9), text="/help")}
        async with aiohttp.ClientSession() as http:
            for headers in ({}, {"X-Telegram-Bot-Api-Secret-Token": secret[:-1]}):
                async with http.post(hook, json=update, headers=headers) as response:
                    assert response.status == 403
            async with http.post(hook, json=update, headers={"X-Telegram-Bot-Api-Secret-Token": secret}) as response:
                assert response.status == 200
        [reply] = await telegram.wait_replies(9, 1, timeout=60)
        assert "/search" in reply.text
    assert secret not in logs[0]


def test_clipchat_run_without_a_token_says_how_to_get_one(tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("CLIPCHAT_", "TELEGRAM_"))}
    import subprocess

    result = subprocess.run(
        [*command(), "run"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env={**env, "HF_HUB_OFFLINE": "1"},
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "@BotFather" in result.stderr and "/newbot" in result.stderr


def test_clipchat_chat_talks_about_a_photo(world_dir: Path, heldout, tmp_path: Path) -> None:
    import subprocess

    held = heldout[0]
    script = f"/photo {held.path}\nwhat colour is the {held.scene.shape}?\n/search {held.scene.caption}\n/quit\n"
    result = subprocess.run(
        [*command(), "chat", "--models", str(world_dir)],
        input=script,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "CLIPCHAT_CACHE_DIR": str(tmp_path)},
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].lower().startswith(held.scene.caption.lower().rstrip("."))
    assert held.scene.colour in lines[2]
    assert str(held.path) in lines[3]
