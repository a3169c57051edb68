"""Forum topics: each topic of a forum supergroup is a conversation of its own, and the bot answers in it. End to
end against the fake Bot API server, which puts messages in topics as Telegram does."""

from __future__ import annotations

from storage import Turn
from tests.bot_helpers import eventually, send_photo, send_text
from tests.fake_telegram import USERNAME, forum, user
from tests.test_bot import distinct, stored

OPERATOR = 99


async def test_each_forum_topic_keeps_its_own_photo_turns_and_reset(start_bot, telegram, understood):
    """A question asked in topic 11 was answered about the photo the same person had posted in topic 12, and its
    "typing…" showed in the forum's General: context was per chat and user, and message_thread_id never read."""
    app = await start_bot()
    room, alice = forum(-100330), user(331)
    here, there = distinct(understood, 2)
    topics = {11: here, 12: there}
    for topic, held in topics.items():
        send_photo(telegram, room, alice, held.image, caption=f"@{USERNAME}", topic=topic)
    described = await telegram.wait_replies(room["id"], 2)
    assert [call.topic for call in described] == [11, 12]
    for topic in topics:
        send_text(telegram, room, alice, f"@{USERNAME} what colour is it?", topic=topic)
    answers = (await telegram.wait_replies(room["id"], 4))[2:]
    for answer, (topic, held), other in zip(answers, topics.items(), (there, here)):
        assert answer.topic == topic, (answer.topic, answer.text)
        assert held.scene.colour in answer.text and other.scene.colour not in answer.text, (topic, answer.text)
    shown = telegram.sent("sendChatAction", room["id"])
    assert shown and {action.topic for action in shown} == {11, 12}  # never in General

    await eventually(lambda: stored(app, Turn.chat_id == room["id"], 8), what="both topics' turns stored")
    send_text(telegram, room, alice, "/reset", topic=11)
    reset = (await telegram.wait_replies(room["id"], 5))[-1]
    assert reset.topic == 11 and "(4 messages)" in reset.text, reset.text  # topic 11's two exchanges, no more
    send_text(telegram, room, alice, f"@{USERNAME} what colour is it?", topic=12)
    still = (await telegram.wait_replies(room["id"], 6))[-1]
    assert still.topic == 12 and there.scene.colour in still.text, still.text
    await eventually(lambda: stored(app, Turn.chat_id == room["id"], 6), what="topic 12's turns kept, and the new")


async def test_a_message_in_a_topic_replies_to_nothing_unless_its_sender_replied(start_bot, telegram, bot_settings):
    """Telegram puts the topic's opening message in reply_to_message of every message in a topic: an operator's
    bare /ban there banned whoever had opened the topic, instead of asking whom to ban."""
    await start_bot(bot_settings.model_copy(update={"admin_ids": [OPERATOR]}))
    room = forum(-100340)
    send_text(telegram, room, user(OPERATOR), "/ban", topic=11)  # the fake's topics are opened by user 1
    [asked] = await telegram.wait_replies(room["id"], 1)
    assert asked.topic == 11 and "Name the user by id" in asked.text, asked.text


async def test_album_replies_and_search_results_stay_in_their_topic(start_bot, telegram, understood):
    """/search's "sending photo…" showed in General, and results sent as replies to a /search deleted meanwhile
    went to General too: only the quote put them in the topic."""
    await start_bot()
    room, alice = forum(-100350), user(351)
    album = distinct(understood, 2)
    for number, held in enumerate(album):
        caption = f"@{USERNAME}" if number == 0 else None
        send_photo(telegram, room, alice, held.image, caption=caption, media_group_id="trip", topic=11)
    [reply] = await telegram.wait_replies(room["id"], 1)
    assert reply.topic == 11 and reply.text.startswith("2 photos:"), reply.text
    asked = send_text(telegram, room, alice, f"/search {album[0].scene.caption}", topic=12)
    telegram.delete(asked)  # before the bot answers it
    found = await telegram.wait_for(lambda: telegram.sent("sendPhoto", room["id"]), what="a search result")
    assert {call.topic for call in found} == {12}
    assert {action.topic for action in telegram.sent("sendChatAction", room["id"])} == {12}  # "sending photo…"
