"""The webhook server (`bot/adapter/webhook.py`) at the HTTP level: refusals come from the headers alone.

No models: the application is built and initialised (getMe against the fake Bot API), never started, so an
update that gets through stays in `application.update_queue` for the test to take.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
from dataclasses import dataclass

import aiohttp
import pytest

from bot.adapter.webhook import MAX_BODY, SECRET_HEADER, WebhookServer
from tests.fake_telegram import private, user
from tests.test_scale_out import free_port

SECRET = "webhook-test-secret_0123456789"
MiB = 2**20
PIECE = bytes(64 * 1024)


@dataclass
class Webhook:
    application: object
    port: int
    url: str


@pytest.fixture
async def webhook(telegram, bot_settings):
    from bot.adapter.application import build_application

    application = build_application(bot_settings)
    await application.initialize()
    port = free_port()
    url = f"http://127.0.0.1:{port}/hook"
    server = WebhookServer(application, url, SECRET)
    await server.start("127.0.0.1", port)
    yield Webhook(application, port, url)
    await server.stop()
    await application.shutdown()


def raw_post(
    port: int, headers: dict[str, str], declared: int | None, send: int, path: str = "/hook", timeout: float = 5.0
) -> tuple[int, int]:
    """POST with `Content-Length: declared` (None: chunked), sending `send` bytes of body on a thread while
    reading the answer, as a client that does not wait for the server would. The status, and the bytes sent
    before the server closed the connection (what it did not read). Blocking: run it on a thread of its own."""
    framing = "Transfer-Encoding: chunked" if declared is None else f"Content-Length: {declared}"
    head = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", "Content-Type: application/json", framing]
    head += [f"{name}: {value}" for name, value in headers.items()]
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as connection:
        connection.sendall(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))

        def feed() -> None:
            nonlocal sent
            with contextlib.suppress(OSError):  # reset or broken pipe: the server stopped reading
                while sent < send:
                    piece = PIECE[: send - sent]
                    connection.sendall(b"%x\r\n%s\r\n" % (len(piece), piece) if declared is None else piece)
                    sent += len(piece)

        feeder = threading.Thread(target=feed, daemon=True)
        feeder.start()
        answer = b""
        with contextlib.suppress(ConnectionResetError):  # after the answer: the unread body made it a reset
            while b"\r\n" not in answer and (data := connection.recv(4096)):
                answer += data
        feeder.join(timeout)
        assert not feeder.is_alive(), "the server neither read the body nor closed the connection"
    assert answer.startswith(b"HTTP/1.1 "), answer
    return int(answer.split()[1]), sent


@pytest.mark.parametrize(
    ("headers", "declared", "path", "status"),
    [
        ({}, 100 * MiB, "/hook", 403),
        ({SECRET_HEADER: ""}, 100 * MiB, "/hook", 403),
        ({SECRET_HEADER: SECRET[:-1]}, 100 * MiB, "/hook", 403),
        ({SECRET_HEADER: SECRET[:-1] + "X"}, 100 * MiB, "/hook", 403),
        ({SECRET_HEADER: SECRET}, 100 * MiB, "/hook", 413),
        ({SECRET_HEADER: SECRET}, MAX_BODY + 1, "/hook", 413),
        ({SECRET_HEADER: SECRET}, 100 * MiB, "/elsewhere", 404),
    ],
    ids=["no secret", "empty secret", "secret's prefix", "wrong secret", "100 MB", "a byte over", "other path"],
)
async def test_a_refusal_comes_from_the_headers_before_the_body(webhook, headers, declared, path, status):
    """The request declares its size and sends only 10 bytes of it: the answer must not wait for the rest."""
    answer, _ = await asyncio.to_thread(raw_post, webhook.port, headers, declared, 10, path, timeout=5)
    assert answer == status
    assert webhook.application.update_queue.empty()


@pytest.mark.parametrize(
    ("headers", "declared", "status"),
    [
        ({}, 100 * MiB, 403),
        ({}, None, 403),
        ({SECRET_HEADER: SECRET}, 100 * MiB, 413),
        ({SECRET_HEADER: SECRET}, None, 413),
    ],
    ids=["no secret", "chunked, no secret", "too large", "chunked, too large"],
)
async def test_a_refused_body_is_cut_off_not_read(webhook, headers, declared, status):
    """A client that sends its 100 MB regardless gets its answer and a closed connection long before the end
    (what it got out went to socket buffers, a few MB at most); a chunked body is cut off at the cap."""
    answer, sent = await asyncio.to_thread(raw_post, webhook.port, headers, declared, 100 * MiB, timeout=30)
    assert answer == status
    assert sent < 50 * MiB


async def test_telegram_gets_the_secret_and_its_updates_reach_the_queue(webhook, telegram):
    assert telegram.webhook == {"url": webhook.url, "secret_token": SECRET}
    async with aiohttp.ClientSession() as http:  # one connection, kept alive, as Telegram's
        update = {"update_id": 1, "message": telegram.message(private(5), user(5), text="/help")}
        for headers in ({}, {SECRET_HEADER: SECRET[::-1]}):  # a small body: read, dropped, and a plain 403
            async with http.post(webhook.url, json=update, headers=headers) as response:
                assert response.status == 403
        for update_id in (1, 2):
            update = {"update_id": update_id, "message": telegram.message(private(5), user(5), text="/help")}
            async with http.post(webhook.url, json=update, headers={SECRET_HEADER: SECRET}) as response:
                assert response.status == 200
            queued = await asyncio.wait_for(webhook.application.update_queue.get(), 5)
            assert (queued.update_id, queued.message.text) == (update_id, "/help")
        # the largest body allowed still gets through
        headers = {SECRET_HEADER: SECRET, "Content-Type": "application/json"}
        update = {"update_id": 3, "message": telegram.message(private(5), user(5), text="/help")}
        body = json.dumps(update).encode()
        body = body[:-1] + b" " * (MAX_BODY - len(body)) + b"}"
        async with http.post(webhook.url, data=body, headers=headers) as response:
            assert response.status == 200
        assert (await asyncio.wait_for(webhook.application.update_queue.get(), 5)).update_id == 3
        async with http.post(webhook.url, data=b"not json", headers=headers) as response:
            assert response.status == 400
    assert webhook.application.update_queue.empty()


async def test_a_port_in_use_is_said_in_one_line(webhook):
    from bot.adapter.webhook import WebhookPortUnavailable

    second = WebhookServer(webhook.application, webhook.url, SECRET)
    with pytest.raises(WebhookPortUnavailable, match=f"127.0.0.1:{webhook.port}.*CLIPCHAT_WEBHOOK_PORT"):
        await second.start("127.0.0.1", webhook.port)
    await second.stop()
