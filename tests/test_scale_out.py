"""Several bot processes on one PostgreSQL database behind a (simulated) load balancer."""

from __future__ import annotations

import asyncio
import itertools
import signal
import socket
from pathlib import Path

import aiohttp
import pytest

from tests.bot_helpers import jpeg
from tests.conftest import BOT_TOKEN
from tests.fake_telegram import private, user
from tests.test_bot_cli import bot_environment, command

SECRET = "load-balanced-secret"


async def wait_listening(port: int, process, timeout: float = 60.0) -> None:
    """Until the process's webhook server accepts connections (it listens just before it registers with Telegram)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            if process.returncode is not None or asyncio.get_running_loop().time() > deadline:
                output = (await process.stdout.read()).decode() if process.returncode is not None else ""
                raise AssertionError(f"no webhook server on port {port}: {output[-2000:]}") from None
            await asyncio.sleep(0.2)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_two_webhook_processes_keep_each_users_order(
    telegram, database_url: str, world_dir: Path, heldout, tmp_path: Path
) -> None:
    ports = [free_port(), free_port()]
    processes = []
    for number, port in enumerate(ports):
        env = bot_environment(
            telegram,
            world_dir,
            tmp_path,
            DATABASE_URL=database_url,
            CLIPCHAT_SHARED_ORDERING="true",
            CLIPCHAT_WEBHOOK_SECRET=SECRET,
            CLIPCHAT_STATE_DIR=str(tmp_path / f"state{number}"),
        )
        processes.append(
            await asyncio.create_subprocess_exec(
                *command(),
                "run",
                "--webhook",
                f"http://127.0.0.1:{port}/hook",
                "--listen",
                "127.0.0.1",
                "--port",
                str(port),
                env=env,
                cwd=tmp_path,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
            )
        )
    try:
        await telegram.wait_for(lambda: len(telegram.sent("setWebhook")) == 2, timeout=180, what="two bots up")
        for port, process in zip(ports, processes):
            await wait_listening(port, process)
        users = [71, 72, 73]
        update_ids = itertools.count(1000)
        async with aiohttp.ClientSession() as http:

            async def deliver(port: int, message: dict) -> None:
                async with http.post(
                    f"http://127.0.0.1:{port}/hook",
                    json={"update_id": next(update_ids), "message": message},
                    headers={"X-Telegram-Bot-Api-Secret-Token": SECRET},
                ) as response:
                    assert response.status == 200

            for number, user_id in enumerate(users):  # their photos, through the first process
                photo = telegram.message(
                    private(user_id), user(user_id), photo=telegram.add_file(jpeg(heldout[number].image))
                )
                await deliver(ports[0], photo)
                await telegram.wait_replies(user_id, 1, timeout=60)
            sent = {user_id: [] for user_id in users}
            questions = ["what colour is it?", "is there a circle?", "what shape is it?"] * 2
            for turn, question in enumerate(questions):  # consecutive updates alternate between processes
                for user_id in users:
                    message = telegram.message(private(user_id), user(user_id), text=question)
                    sent[user_id].append(message["message_id"])
                    await deliver(ports[turn % 2], message)
        await telegram.wait_for(
            lambda: all(len(telegram.replies(u)) >= 1 + len(questions) for u in users), timeout=120, what="every answer"
        )
        for user_id in users:
            assert [reply.reply_to for reply in telegram.replies(user_id)[1:]] == sent[user_id]
    finally:
        logs = []
        for process in processes:
            process.send_signal(signal.SIGINT)
        for process in processes:
            output, _ = await asyncio.wait_for(process.communicate(), 60)
            logs.append(output.decode())
    assert all(BOT_TOKEN.split(":")[1] not in log for log in logs)
    assert all(process.returncode == 0 for process in processes), logs
