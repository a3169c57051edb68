"""People Telegram hides behind shared accounts: anonymous admins and those who write as a channel.

Telegram puts the same account in `from` for all of them (GroupAnonymousBot, Channel_Bot), so the
bot keys them by `sender_chat`: each group's anonymous admins, and each channel, are one sender.
"""

from __future__ import annotations

import json
import logging

from tests.bot_helpers import eventually, send_photo, send_text
from tests.fake_telegram import channel, group, private, user

GROUP_A, GROUP_B = group(-100701), group(-100702)
GROUP_A["title"], GROUP_B["title"] = "Group A", "Group B"
NEWS = {"id": -100703, "type": "channel", "title": "News"}
OPERATOR = 99


async def test_anonymous_admins_of_one_group_cannot_crowd_out_those_of_another(
    start_bot, telegram, bot_settings, understood
):
    """With one queue for the shared account, group B's question was dropped behind group A's flood."""
    await start_bot(bot_settings.model_copy(update={"user_queue": 2}))
    held = understood[0]
    send_photo(telegram, GROUP_B, None, held.image, caption="@clipchat_test_bot", sender_chat=GROUP_B)
    await telegram.wait_replies(GROUP_B["id"], 1, timeout=60)
    for _ in range(6):  # more than group A's queue holds
        send_photo(telegram, GROUP_A, None, held.image, caption="@clipchat_test_bot", sender_chat=GROUP_A)
    send_text(telegram, GROUP_B, None, "@clipchat_test_bot what colour is it?", sender_chat=GROUP_B)
    replies = await telegram.wait_replies(GROUP_B["id"], 2, timeout=60)
    assert replies[-1].reply_to is not None and replies[-1].text
    answered_a = await telegram.wait_replies(GROUP_A["id"], 2, timeout=60)
    assert len(answered_a) >= 2  # group A itself was only slowed down, to its own queue's size


async def test_an_anonymous_admin_may_change_the_groups_settings(start_bot, telegram):
    await start_bot()
    send_text(telegram, GROUP_A, None, "/settings autocaption on", sender_chat=GROUP_A)
    [answer] = await telegram.wait_replies(GROUP_A["id"], 1)
    assert answer.text.startswith("Saved. Auto-captions")
    # Writing as some channel proves nothing about this group
    send_text(telegram, GROUP_A, None, "/settings autocaption off", sender_chat=NEWS)
    answers = await telegram.wait_replies(GROUP_A["id"], 2)
    assert answers[-1].text == "Only this chat's admins can change my settings."


async def test_an_anonymous_admins_forget_is_explained_and_an_admin_can_confirm_it(start_bot, telegram, understood):
    from storage import rows_about_user

    app = await start_bot()
    gid = GROUP_A["id"]
    send_photo(telegram, GROUP_A, None, understood[0].image, caption="@clipchat_test_bot", sender_chat=GROUP_A)
    await telegram.wait_replies(gid, 1, timeout=60)
    bob = user(7101)  # a member who wrote as himself
    send_photo(telegram, GROUP_A, bob, understood[1].image, caption="@clipchat_test_bot")
    await telegram.wait_replies(gid, 2, timeout=60)
    send_text(telegram, GROUP_A, None, "/forget", sender_chat=GROUP_A)
    question = (await telegram.wait_replies(gid, 3))[-1]
    assert "You're writing as Group A, not as yourself" in question.text
    assert "only an admin of Group A can confirm" in question.text
    buttons = [b["callback_data"] for row in question.params["reply_markup"]["inline_keyboard"] for b in row]
    assert buttons == [f"forget:yes:{gid}", f"forget:no:{gid}"]

    def press(presser: dict, number: int) -> None:
        telegram.push(
            {
                "callback_query": {
                    "id": f"cb{number}",
                    "from": presser,
                    "chat_instance": "ci",
                    "data": f"forget:yes:{gid}",
                    "message": telegram.bot_message(question),
                }
            }
        )

    press(bob, 1)  # not an admin: refused
    await telegram.wait_for(lambda: telegram.sent("answerCallbackQuery"), what="the refusal")
    assert telegram.sent("answerCallbackQuery")[0].params.get("show_alert") in (True, "true", "True")
    assert not telegram.sent("editMessageText")
    admin = user(7102)
    telegram.admins[gid] = {admin["id"]}
    press(admin, 2)  # a button press names the real person: an admin of the group confirms
    [done] = await telegram.wait_for(lambda: telegram.sent("editMessageText"), what="the confirmation")
    assert done.params["text"].startswith("Done. I deleted 1 photos")
    async with app.bot_data.services.sessions() as session:
        assert not any((await rows_about_user(session, gid)).values())
        assert sum((await rows_about_user(session, bob["id"])).values()) > 0  # Bob's own photo stays


async def test_forget_waits_for_an_album_still_being_looked_at(start_bot, telegram, understood):
    """The album's reply and records came after the forget had run, and its rows stayed."""
    from storage import rows_about_user
    from tests.fake_telegram import private

    app = await start_bot()
    chat, carol = private(7201), user(7201)
    for held in understood[:3]:
        send_photo(telegram, chat, carol, held.image, media_group_id="album-before-forget")
    send_text(telegram, chat, carol, "/forget")
    question = await telegram.wait_for(
        lambda: [c for c in telegram.replies(7201) if "reply_markup" in c.params], what="the /forget question"
    )
    telegram.push(
        {
            "callback_query": {
                "id": "cb-album",
                "from": carol,
                "chat_instance": "ci",
                "data": "forget:yes:7201",
                "message": telegram.bot_message(question[0]),
            }
        }
    )
    [done] = await telegram.wait_for(lambda: telegram.sent("editMessageText"), what="the confirmation")
    assert done.params["text"].startswith("Done. I deleted 3 photos")
    assert any(call.text.startswith("3 photos:") for call in telegram.replies(7201))  # answered first
    async with app.bot_data.services.sessions() as session:
        assert not any((await rows_about_user(session, 7201)).values())


async def test_a_press_in_a_group_that_finds_the_bot_busy_says_so_and_can_be_pressed_again(
    start_bot, telegram, understood
):
    """A /forget press that timed out waiting for the presser's album said nothing in a group (the error
    handler answered only commands and private chats): the press seemed to do nothing, for good."""
    import asyncio

    from clipchat.errors import Busy
    from storage import rows_about_user

    app = await start_bot()
    app.bot_data.albums.settle_within = 0.5  # how long a press waits for an album still being answered
    gid, carol = GROUP_A["id"], user(7301)
    send_text(telegram, GROUP_A, carol, "/forget")
    [question] = await telegram.wait_replies(gid, 1)
    keyboard = question.params["reply_markup"]
    telegram.held["getFile"] = asyncio.Event()  # then an album, whose photos stay in flight
    for held in understood[:2]:
        send_photo(telegram, GROUP_A, carol, held.image, caption="@clipchat_test_bot", media_group_id="slow-album")
    await telegram.wait_for(lambda: telegram.sent("getFile"), what="the album's downloads")

    def press(number: int) -> None:
        telegram.push(
            {
                "callback_query": {
                    "id": f"busy{number}",
                    "from": carol,
                    "chat_instance": "ci",
                    "data": f"forget:yes:{carol['id']}",
                    "message": telegram.bot_message(question),
                }
            }
        )

    press(1)
    [busy] = await telegram.wait_for(lambda: telegram.sent("editMessageText"), what="the busy note")
    assert busy.params["text"] == f"{Busy.user_message}\n\n{question.text}"  # the question, still to press
    markup = busy.params["reply_markup"]
    assert (json.loads(markup) if isinstance(markup, str) else markup) == keyboard
    telegram.held.pop("getFile").set()
    await telegram.wait_replies(gid, 2, timeout=60)  # the album answered
    press(2)
    await telegram.wait_for(
        lambda: [c for c in telegram.sent("editMessageText") if c.params["text"].startswith("Done.")],
        what="the confirmation",
    )
    async with app.bot_data.services.sessions() as session:
        assert not any((await rows_about_user(session, carol["id"])).values())


def refused(caplog, user_id: int | None, chat_id: int) -> bool:
    return f"refused update from user {user_id} in chat {chat_id} (banned)" in caplog.text


async def test_a_group_is_banned_by_its_id_and_its_anonymous_admins_with_it(start_bot, telegram, bot_settings, caplog):
    """/ban in reply to an anonymous admin banned the group's id and said "banned", yet the admin (and everyone
    else there) was still answered: bans were checked against the person and a channel they wrote as, never
    against the chat, and the group's own id as sender_chat was dropped."""
    caplog.set_level(logging.INFO, logger="bot.adapter.application")  # where refusals are logged
    await start_bot(bot_settings.model_copy(update={"admin_ids": [OPERATOR]}))
    gid, operator = GROUP_A["id"], user(OPERATOR)
    anonymous = send_text(telegram, GROUP_A, None, "/help", sender_chat=GROUP_A)
    await telegram.wait_replies(gid, 1)
    send_text(telegram, GROUP_A, operator, "/ban", reply_to=anonymous)
    explained = (await telegram.wait_replies(gid, 2))[-1].text
    assert "anonymous admin" in explained and f"/ban {gid}" in explained, explained
    send_text(telegram, GROUP_A, None, "/help", sender_chat=GROUP_A)  # nothing was banned by that
    assert "/search" in (await telegram.wait_replies(gid, 3))[-1].text
    send_text(telegram, GROUP_A, operator, f"/ban {gid}")
    said = (await telegram.wait_replies(gid, 4))[-1].text
    assert said.startswith(f"Chat {gid} is banned") and "everyone in it" in said, said
    send_text(telegram, GROUP_A, None, "/help", sender_chat=GROUP_A)
    send_text(telegram, GROUP_A, user(7301), "/help")
    await eventually(lambda: refused(caplog, 1087968824, gid), what="the anonymous admin refused")
    await eventually(lambda: refused(caplog, 7301, gid), what="a member of the banned group refused")
    send_text(telegram, private(OPERATOR), operator, f"/unban {gid}")
    assert "back to the usual rules" in (await telegram.wait_replies(OPERATOR, 1))[-1].text
    send_text(telegram, GROUP_A, None, "/help", sender_chat=GROUP_A)
    replies = await telegram.wait_replies(gid, 5)
    assert len(replies) == 5 and "/search" in replies[-1].text  # the admin's banned /help got no answer


async def test_a_channel_identity_banned_by_reply_is_named_and_its_owner_is_still_served(
    start_bot, telegram, bot_settings, caplog
):
    """The reply said "-100703 is banned: I'll ignore everything they send", naming neither a channel nor
    what would be ignored."""
    caplog.set_level(logging.INFO, logger="bot.adapter.application")
    await start_bot(bot_settings.model_copy(update={"admin_ids": [OPERATOR]}))
    gid, bob = GROUP_A["id"], user(7302)
    as_news = send_text(telegram, GROUP_A, bob, "/help", sender_chat=NEWS)
    await telegram.wait_replies(gid, 1)
    send_text(telegram, GROUP_A, user(OPERATOR), "/ban", reply_to=as_news)
    said = (await telegram.wait_replies(gid, 2))[-1].text
    assert said.startswith(f"The channel News ({NEWS['id']}) is banned"), said
    assert f"/unban {NEWS['id']}" in said
    send_text(telegram, GROUP_A, bob, "/help", sender_chat=NEWS)
    await eventually(lambda: refused(caplog, 136817688, gid), what="the channel identity refused")
    send_text(telegram, GROUP_A, bob, "/help")  # Bob as himself is nobody's ban
    replies = await telegram.wait_replies(gid, 3)
    assert len(replies) == 3 and "/search" in replies[-1].text


async def test_a_banned_channel_gets_no_alt_text(start_bot, telegram, bot_settings, understood, caplog):
    """`/ban <channel id>` said "banned", and the channel's photo posts still got their alt text."""
    caplog.set_level(logging.INFO, logger="bot.adapter.application")
    await start_bot(bot_settings.model_copy(update={"admin_ids": [OPERATOR]}))
    posts, operator = channel(-100704), (private(OPERATOR), user(OPERATOR))
    send_text(telegram, posts, None, "/settings alttext on")
    await telegram.wait_replies(posts["id"], 1)
    send_text(telegram, *operator, f"/ban {posts['id']}")
    said = (await telegram.wait_replies(OPERATOR, 1))[-1].text
    assert said.startswith(f"Chat {posts['id']} is banned"), said
    send_photo(telegram, posts, None, understood[0].image, caption="Banned post")
    await eventually(lambda: refused(caplog, None, posts["id"]), what="the banned channel's post refused")
    send_text(telegram, *operator, f"/unban {posts['id']}")
    await telegram.wait_replies(OPERATOR, 2)
    post = send_photo(telegram, posts, None, understood[1].image, caption="Later post")
    [edit] = await telegram.wait_for(lambda: telegram.sent("editMessageCaption"), what="an alt text edit")
    assert int(edit.params["message_id"]) == post["message_id"]  # the channel's posts run in order: none before
