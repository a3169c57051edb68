"""The bot end to end: real python-telegram-bot over HTTP against a fake Bot API server, world models."""

from __future__ import annotations

import asyncio

from tests.bot_helpers import jpeg, send_photo, send_text
from tests.fake_telegram import USERNAME, group, private, user


def caption_of(models, image) -> str:
    return models.describe([image])[0].caption


async def test_private_photo_gets_caption_and_tags(start_bot, telegram, world_models, heldout):
    await start_bot()
    photo = send_photo(telegram, private(1), user(1), heldout[0].image)
    [reply] = await telegram.wait_replies(1, 1)
    assert caption_of(world_models, heldout[0].image).lower() in reply.text.lower()
    assert "Tags: #" in reply.text
    assert reply.reply_to == photo["message_id"]
    assert telegram.sent("sendChatAction", 1)[0].params["action"] == "typing"
    registered = {c["command"] for c in telegram.sent("setMyCommands")[0].params["commands"]}
    assert {"caption", "tags", "ask", "mood", "search", "reset", "forget", "settings", "help"} <= registered
