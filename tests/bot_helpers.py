"""Sending photos and messages to the bot through the fake server."""

from __future__ import annotations

import asyncio
import inspect
import io
from collections.abc import Callable

from PIL import Image

from tests.fake_telegram import FakeTelegram


def jpeg(image: Image.Image, format: str = "JPEG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=format)
    return buffer.getvalue()


def send_photo(
    telegram: FakeTelegram,
    chat: dict,
    sender: dict | None,
    image: Image.Image | bytes,
    caption: str | None = None,
    **fields,
) -> dict:
    data = image if isinstance(image, bytes) else jpeg(image)
    message = telegram.message(chat, sender, photo=telegram.add_file(data), caption=caption, **fields)
    telegram.push({"channel_post" if chat["type"] == "channel" else "message": message})
    return message


async def eventually(check: Callable, *, what: str, timeout: float = 30.0, interval: float = 0.05):
    """Poll `check` (a function, or a coroutine function) until it returns something truthy, and return that;
    fail, saying what never happened, after `timeout` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        await asyncio.sleep(interval)


def send_text(telegram: FakeTelegram, chat: dict, sender: dict | None, text: str, **fields) -> dict:
    message = telegram.message(chat, sender, text=text, **fields)
    telegram.push({"channel_post" if chat["type"] == "channel" else "message": message})
    return message


def behind_spoilers(call, field: str = "text") -> list[str]:
    """The stretches of what the bot sent (its text, or with `field="caption"` its caption) that Telegram shows
    only behind a spoiler: the words under each `spoiler` entity, cut out by UTF-16 offsets as Telegram does."""
    units = call.params[field].encode("utf-16-le")
    entities = call.params.get("entities" if field == "text" else "caption_entities") or []
    return [
        units[2 * entity["offset"] : 2 * (entity["offset"] + entity["length"])].decode("utf-16-le")
        for entity in entities
        if entity["type"] == "spoiler"
    ]
