"""/search shows nobody what they should not see: spoilers stay hidden, a group's history before someone
was seen there stays theirs, and a photo its sender told the bot to forget is gone. End to end against the
fake Bot API server."""

from __future__ import annotations

from sqlalchemy import func, select

from storage import ImageRecord
from tests.bot_helpers import eventually, send_photo, send_text
from tests.fake_telegram import group, user


async def images_in(app, chat_id: int) -> int:
    async with app.bot_data.services.sessions() as session:
        return await session.scalar(select(func.count()).select_from(ImageRecord).where(ImageRecord.chat_id == chat_id))


def utf16_length(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


async def test_a_spoiler_photo_comes_back_from_search_behind_its_spoiler(start_bot, telegram, understood):
    """/search sent a spoiler photo back in plain sight, its description written out in plain words."""
    app = await start_bot()
    room, alice, bob = group(-100810), user(811), user(812)
    hidden, shown = understood[0], next(h for h in understood if h.scene.colour != understood[0].scene.colour)
    send_text(telegram, room, bob, "hello all")  # Bob is in the group before the photos are posted
    spoiler = send_photo(telegram, room, alice, hidden.image, spoiler=True)  # kept quietly, for /search
    plain = send_photo(telegram, room, alice, shown.image)
    await eventually(lambda: kept(app, room["id"], 2), what="both photos kept")

    send_text(telegram, room, bob, f"/search {hidden.scene.caption}")
    found = await telegram.wait_for(lambda: telegram.sent("sendPhoto", room["id"]), what="a search result")
    [sent] = [call for call in found if call.params["photo"] == spoiler["photo"][-1]["file_id"]]
    assert sent.params.get("has_spoiler") in (True, "true", "True")
    caption = sent.params["caption"]
    assert hidden.scene.caption.lower() in caption.lower()  # the description is there, but only tapped on
    assert sent.params.get("caption_entities") == [{"type": "spoiler", "offset": 0, "length": utf16_length(caption)}]

    send_text(telegram, room, bob, f"/search {shown.scene.caption}")
    found = await telegram.wait_for(
        lambda: [
            c for c in telegram.sent("sendPhoto", room["id"]) if c.params["photo"] == plain["photo"][-1]["file_id"]
        ],
        what="the plain photo found",
    )
    assert found[0].params.get("has_spoiler") in (None, False, "false", "False")
    assert not found[0].params.get("caption_entities")  # a photo in plain sight keeps its words in plain sight


async def kept(app, chat_id: int, count: int) -> bool:
    return await images_in(app, chat_id) == count
