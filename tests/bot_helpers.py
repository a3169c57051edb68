"""Sending photos and messages to the bot through the fake server."""

from __future__ import annotations

import io

from PIL import Image

from tests.fake_telegram import FakeTelegram


def jpeg(image: Image.Image, format: str = "JPEG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=format)
    return buffer.getvalue()


def send_photo(telegram: FakeTelegram, chat: dict, sender: dict | None, image: Image.Image | bytes,
               caption: str | None = None, **fields) -> dict:
    data = image if isinstance(image, bytes) else jpeg(image)
    message = telegram.message(chat, sender, photo=telegram.add_file(data), caption=caption, **fields)
    telegram.push({"channel_post" if chat["type"] == "channel" else "message": message})
    return message


def send_text(telegram: FakeTelegram, chat: dict, sender: dict | None, text: str, **fields) -> dict:
    message = telegram.message(chat, sender, text=text, **fields)
    telegram.push({"channel_post" if chat["type"] == "channel" else "message": message})
    return message
