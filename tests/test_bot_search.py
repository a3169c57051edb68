"""/search shows nobody what they should not see: spoilers stay hidden, a group's history before someone
was seen there stays theirs, and a photo its sender told the bot to forget is gone. End to end against the
fake Bot API server."""

from __future__ import annotations

import asyncio

from sqlalchemy import func, select

from storage import ImageRecord, SentPhoto
from tests.bot_helpers import eventually, send_photo, send_text
from tests.fake_telegram import USERNAME, group, user
from tests.test_bot import nearly_tied


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


def service(telegram, chat: dict, sender: dict, **fields) -> dict:
    """A service message in a group: someone joined (`new_chat_members`) or left (`left_chat_member`)."""
    message = telegram.message(chat, sender)
    message.update(fields)
    telegram.push({"message": message})
    return message


def found_file(telegram, chat_id: int, file_id: str) -> list:
    return [call for call in telegram.sent("sendPhoto", chat_id) if call.params["photo"] == file_id]


async def test_a_groups_photos_from_before_someone_was_there_are_not_theirs_to_find(start_bot, telegram, understood):
    """A newcomer's /search found the photos posted before they came, which a group that hides its history
    from new members never showed them; so did someone who left and came back."""
    app = await start_bot()
    room, alice, carol = group(-100820), user(821), user(822)
    before, after = distinct_pair(understood)
    early = send_photo(telegram, room, alice, before.image)["photo"][-1]["file_id"]  # kept quietly, for /search
    await eventually(lambda: kept(app, room["id"], 1), what="the photo kept")

    send_text(telegram, room, carol, f"/search {before.scene.caption}")  # the first the bot sees of Carol
    [note] = await telegram.wait_replies(room["id"], 1)
    assert note.method == "sendMessage" and "haven't seen any photos" in note.text
    assert not found_file(telegram, room["id"], early)
    send_text(telegram, room, alice, f"/search {before.scene.caption}")  # Alice was there: it is hers to find
    await telegram.wait_for(lambda: found_file(telegram, room["id"], early), what="Alice's search result")

    late = send_photo(telegram, room, alice, after.image)["photo"][-1]["file_id"]
    await eventually(lambda: kept(app, room["id"], 2), what="the second photo kept")
    send_text(telegram, room, carol, f"/search {after.scene.caption}")  # posted since she came: hers to find
    await telegram.wait_for(lambda: found_file(telegram, room["id"], late), what="Carol's search result")
    assert len(found_file(telegram, room["id"], early)) == 1  # only Alice's search ever sent the early photo

    service(telegram, room, alice, left_chat_member=alice)  # Alice leaves, and is added back later
    service(telegram, room, carol, new_chat_members=[alice])
    replies = len(telegram.replies(room["id"]))
    send_text(telegram, room, alice, f"/search {before.scene.caption}")
    [*_, again] = await telegram.wait_replies(room["id"], replies + 1)
    assert again.method == "sendMessage" and "haven't seen any photos" in again.text
    assert len(found_file(telegram, room["id"], early)) == 1 and len(found_file(telegram, room["id"], late)) == 1


def distinct_pair(understood):
    first = understood[0]
    return first, next(held for held in understood if held.scene.colour != first.scene.colour)


OPERATOR = 839


async def test_a_sender_makes_the_bot_forget_one_photo_by_replying_forget_this(
    start_bot, telegram, bot_settings, understood
):
    """Bots are not told when a message is deleted, so a photo its sender deleted stayed findable by /search and
    by follow-ups, and /forget could only delete everything about them."""
    app = await start_bot(bot_settings.model_copy(update={"admin_ids": [OPERATOR]}))
    room, alice, bob, operator = group(-100830), user(831), user(832), user(OPERATOR)
    mine, theirs = distinct_pair(understood)
    send_text(telegram, room, bob, "hello all")  # Bob is in the group before Alice's photo
    photo = send_photo(telegram, room, alice, mine.image, caption=f"@{USERNAME} look")
    [described] = await telegram.wait_replies(room["id"], 1)
    await eventually(lambda: kept(app, room["id"], 1), what="the photo kept")  # it is stored after the reply
    file_id = photo["photo"][-1]["file_id"]

    send_text(telegram, room, bob, "/forget this", reply_to=photo)  # not his to forget
    refused = (await telegram.wait_replies(room["id"], 2))[-1]
    assert "only the person who sent that photo" in refused.text and "reply_markup" not in refused.params
    send_text(telegram, room, bob, f"/search {mine.scene.caption}")
    await telegram.wait_for(lambda: found_file(telegram, room["id"], file_id), what="the photo, still there")

    send_text(telegram, room, alice, "/forget this")  # which one? she has to reply to it
    asked = (await telegram.wait_replies(room["id"], 4))[-1]
    assert "Reply to the photo you want me to forget" in asked.text
    send_text(telegram, room, alice, "/forget this", reply_to=telegram.bot_message(described))  # or to my answer
    done = (await telegram.wait_replies(room["id"], 5))[-1]
    assert "I forgot that photo and the 2 messages about it" in done.text, done.text
    await eventually(lambda: kept(app, room["id"], 0), what="the photo deleted")

    send_text(telegram, room, bob, f"/search {mine.scene.caption}")
    gone = (await telegram.wait_replies(room["id"], 6))[-1]
    assert gone.method == "sendMessage" and len(found_file(telegram, room["id"], file_id)) == 1
    send_text(telegram, room, alice, "/caption", reply_to=photo)  # a follow-up finds nothing either
    assert "I don't have a photo here yet" in (await telegram.wait_replies(room["id"], 7))[-1].text
    send_text(telegram, room, alice, "/forget this", reply_to=photo)
    assert "I don't have that photo" in (await telegram.wait_replies(room["id"], 8))[-1].text

    other = send_photo(telegram, room, bob, theirs.image)  # an operator may forget anyone's
    await eventually(lambda: kept(app, room["id"], 1), what="Bob's photo kept")
    send_text(telegram, room, operator, "/forget this", reply_to=other)
    assert "I forgot that photo, and /search won't find it" in (await telegram.wait_replies(room["id"], 9))[-1].text
    await eventually(lambda: kept(app, room["id"], 0), what="Bob's photo deleted")


async def test_a_photo_forgotten_while_search_sends_its_results_is_not_sent_and_the_rest_recorded(
    start_bot, telegram, world_models, understood
):
    """/search reads its results first and sends them one by one (in a busy group seconds apart): Alice's
    `/forget this` in between had the bot post her photo again after telling her it was deleted, then fail to
    record the results it sent (a foreign key to the deleted photo), so Bob got an error instead."""
    phrase, tied = nearly_tied(world_models, understood)
    app = await start_bot()
    room, alice, bob = group(-100840), user(841), user(842)
    send_text(telegram, room, bob, "hello all")  # Bob is in the group before the photos are posted
    posted = {}
    for held in tied:
        photo = send_photo(telegram, room, alice, held.image)  # kept quietly, for /search
        posted[photo["photo"][-1]["file_id"]] = photo
    await eventually(lambda: kept(app, room["id"], 2), what="both photos kept")

    telegram.held["sendPhoto"] = asyncio.Event()  # the first result stays in flight
    try:
        send_text(telegram, room, bob, f"/search {phrase}")
        [first] = await telegram.wait_for(lambda: telegram.sent("sendPhoto", room["id"]), what="the first result")
        [second] = [file_id for file_id in posted if file_id != first.params["photo"]]
        send_text(telegram, room, alice, "/forget this", reply_to=posted[second])
        await telegram.wait_for(
            lambda: any("I forgot that photo" in c.text for c in telegram.replies(room["id"])), what="the forgetting"
        )
        await eventually(lambda: kept(app, room["id"], 1), what="her photo deleted")
    finally:
        telegram.held["sendPhoto"].set()

    async def finished() -> bool:
        async with app.bot_data.services.sessions() as session:
            recorded = await session.scalar(select(func.count()).select_from(SentPhoto))
        return bool(recorded) or any("went wrong" in c.text for c in telegram.replies(room["id"]))

    await eventually(finished, what="the search finished", timeout=15)
    assert not found_file(telegram, room["id"], second)  # never posted again once forgotten
    assert not [c for c in telegram.replies(room["id"]) if "went wrong" in c.text]
    async with app.bot_data.services.sessions() as session:
        recorded = (await session.execute(select(SentPhoto.message_id, SentPhoto.image_id))).all()
    shown = telegram.bot_message(first)
    assert [message_id for message_id, _ in recorded] == [shown["message_id"]]  # a reply to it asks about it
