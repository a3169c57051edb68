"""Running the bot for a community, end to end against the fake Bot API: daily budgets, the operators'
commands, and groups that turn photo indexing off."""

from __future__ import annotations

import asyncio
import logging
from datetime import date

import pytest
from sqlalchemy import func, select

from storage import ImageRecord
from tests.bot_helpers import eventually, send_photo, send_text
from tests.fake_telegram import USERNAME, group, private, user

OPERATOR = 99


async def images_in(app, chat_id: int) -> int:
    async with app.bot_data.services.sessions() as session:
        return await session.scalar(select(func.count()).select_from(ImageRecord).where(ImageRecord.chat_id == chat_id))


async def last_reply_after(telegram, chat_id: int, count: int) -> str:
    return (await telegram.wait_replies(chat_id, count))[-1].text


async def test_daily_budgets_are_told_once_and_spare_operators(start_bot, telegram, bot_settings, understood):
    settings = bot_settings.model_copy(
        update={
            "daily_photos_per_user": 2,
            "daily_questions_per_user": 1,
            "daily_photos_per_group": 3,
            "admin_ids": [OPERATOR],
        }
    )
    app = await start_bot(settings)
    alice, chat = user(1), private(1)
    for number in range(2):
        send_photo(telegram, chat, alice, understood[number].image)
        assert "Tags: #" in await last_reply_after(telegram, 1, number + 1)
    send_photo(telegram, chat, alice, understood[2].image)
    told = await last_reply_after(telegram, 1, 3)
    assert "daily budget of photos (2)" in told and "midnight UTC" in told
    send_photo(telegram, chat, alice, understood[3].image)  # told once: the next refusal says nothing
    send_text(telegram, chat, alice, "what colour is it?")  # questions have their own budget
    answer = await last_reply_after(telegram, 1, 4)
    assert "budget" not in answer and understood[1].scene.colour in answer
    send_text(telegram, chat, alice, "what shape is it?")
    assert "daily budget of questions (1)" in await last_reply_after(telegram, 1, 5)
    send_text(telegram, chat, alice, "/help")  # no model: never counted
    assert "/search" in await last_reply_after(telegram, 1, 6)
    assert len(telegram.replies(1)) == 6 and await images_in(app, 1) == 2  # refused photos are not kept

    for number in range(3):  # operators are never counted
        send_photo(telegram, private(OPERATOR), user(OPERATOR), understood[number].image)
    replies = await telegram.wait_replies(OPERATOR, 3)
    assert all("Tags: #" in reply.text for reply in replies)

    room = group(-100800)
    for number, member in enumerate((11, 12, 13)):  # photos nobody addressed count for the group's budget
        send_photo(telegram, room, user(member), understood[number].image)
    await eventually(lambda: images_in(app, room["id"]), what="the group's photos kept")
    await eventually(lambda: _equals(images_in(app, room["id"]), 3), what="three photos kept")
    send_photo(telegram, room, user(14), understood[4].image, caption=f"@{USERNAME}")
    assert "This chat has used its daily budget of photos (3)" in await last_reply_after(telegram, room["id"], 1)
    send_text(telegram, room, user(OPERATOR), "/quota photos 10")  # the operator gives this group more
    assert "10 a day" in await last_reply_after(telegram, room["id"], 2)
    send_photo(telegram, room, user(14), understood[4].image, caption=f"@{USERNAME}")
    assert "Tags: #" in await last_reply_after(telegram, room["id"], 3)
    send_text(telegram, room, user(OPERATOR), "/usage")
    assert "This chat today: photos: 5 of 10" in await last_reply_after(telegram, room["id"], 4)


async def _equals(count, expected: int) -> bool:
    return await count == expected


async def test_operators_allow_and_ban_people_and_it_outlives_a_restart(
    start_bot, telegram, bot_settings, understood, caplog
):
    caplog.set_level(logging.INFO, logger="bot.adapter.application")  # where refusals are logged
    settings = bot_settings.model_copy(update={"allowed_users": [1], "admin_ids": [OPERATOR]})
    app = await start_bot(settings)
    operator = (private(OPERATOR), user(OPERATOR))
    send_text(telegram, private(2), user(2), "/help")
    assert "this bot is private" in await last_reply_after(telegram, 2, 1)
    send_text(telegram, *operator, "/allow 2")
    assert "2 is allowed now" in await last_reply_after(telegram, OPERATOR, 1)
    send_text(telegram, private(2), user(2), "/help")
    assert "/search" in await last_reply_after(telegram, 2, 2)
    send_text(telegram, private(2), user(2), "/ban 1")  # only operators
    assert "Only the bot's operators" in await last_reply_after(telegram, 2, 3)

    send_text(telegram, *operator, "/ban 1")
    assert "1 is banned" in await last_reply_after(telegram, OPERATOR, 2)
    send_text(telegram, *operator, f"/ban {OPERATOR}")
    assert "is an operator" in await last_reply_after(telegram, OPERATOR, 3)
    send_photo(telegram, private(1), user(1), understood[0].image)
    await eventually(lambda: "refused update from user 1 " in caplog.text, what="the banned user's photo refused")
    send_text(telegram, *operator, "/usage 1")
    assert "1 today: photos: 0 of 300, questions: 0 of 600. Banned." in await last_reply_after(telegram, OPERATOR, 4)

    await start_bot.stop(app)  # another process (here: the next start) reads the same bans
    app = await start_bot(settings)
    caplog.clear()
    send_text(telegram, private(1), user(1), "/help")
    await eventually(lambda: "refused update from user 1 " in caplog.text, what="the ban kept over a restart")
    assert telegram.replies(1) == [] and await images_in(app, 1) == 0
    send_text(telegram, *operator, "/unban 1")
    assert "back to the usual rules" in await last_reply_after(telegram, OPERATOR, 5)
    send_photo(telegram, private(1), user(1), understood[0].image)
    assert "Tags: #" in await last_reply_after(telegram, 1, 1)
    send_text(telegram, *operator, "/usage 1")
    assert "1 today: photos: 1 of 300" in await last_reply_after(telegram, OPERATOR, 6)


async def test_a_group_that_turns_indexing_off_is_not_watched(start_bot, telegram, world_models, understood):
    app = await start_bot()
    room, admin, member = group(-100900), user(31), user(32)
    telegram.admins[room["id"]] = {admin["id"]}
    send_text(telegram, room, admin, "/settings index off")
    assert "Keep photos nobody asked me about, for /search: off" in await last_reply_after(telegram, room["id"], 1)
    send_photo(telegram, room, member, understood[0].image)  # nobody addressed: neither looked at nor kept
    send_text(telegram, room, member, "/caption")  # the member's updates run in order: the photo went first
    assert "don't have a photo here" in await last_reply_after(telegram, room["id"], 2)
    assert await images_in(app, room["id"]) == 0
    send_photo(telegram, room, member, understood[1].image, caption=f"@{USERNAME} what is this?")
    assert "Tags: #" in await last_reply_after(telegram, room["id"], 3)  # spoken to: answered and kept
    await eventually(lambda: _equals(images_in(app, room["id"]), 1), what="the addressed photo kept")
    send_text(telegram, room, admin, "/settings index on")
    await last_reply_after(telegram, room["id"], 4)
    send_photo(telegram, room, member, understood[2].image)
    await eventually(lambda: _equals(images_in(app, room["id"]), 2), what="the unaddressed photo kept again")
    assert len(telegram.replies(room["id"])) == 4  # kept quietly, as before


async def test_counts_taken_at_once_are_never_lost(sessions) -> None:
    from storage import use, write_with_retry

    day = date(2026, 12, 1)
    counts = await asyncio.gather(
        *[write_with_retry(sessions, lambda session: use(session, "user", 7, day, "photos")) for _ in range(12)]
    )
    assert sorted(counts) == list(range(1, 13))


async def test_a_ban_made_by_another_process_applies_here_without_holding_updates(sessions) -> None:
    from storage import AccessList, set_access, write_with_retry

    here, there = AccessList(refresh_s=0.05), AccessList(refresh_s=0.05)
    assert await here.status_of(sessions, [5]) == [None]
    await write_with_retry(sessions, lambda session: set_access(session, 5, "banned", OPERATOR))
    there.changed(5, "banned")  # the process that banned knows at once
    assert await there.status_of(sessions, [5]) == ["banned"]
    await asyncio.sleep(0.1)
    assert await here.status_of(sessions, [5]) == [None]  # stale: answered at once, read in the background
    await eventually(lambda: _answers_banned(here, sessions), what="the other process's ban seen here")
    await here.close()


async def _answers_banned(access, sessions) -> bool:
    return await access.status_of(sessions, [5]) == ["banned"]


OLD_GROUP = {"id": -4_001, "type": "group", "title": "Garden club"}
SUPERGROUP = {"id": -1_000_000_004_001, "type": "supergroup", "title": "Garden club"}


def announce_upgrade(telegram, old: dict, new: dict, by: dict, first: str = "old group") -> None:
    """What Telegram sends when a group becomes a supergroup: the old group's last message, and the new one's
    first, both from whoever upgraded it."""
    to_new = telegram.message(old, by)
    to_new["migrate_to_chat_id"] = new["id"]
    from_old = telegram.message(new, by)
    from_old["migrate_from_chat_id"] = old["id"]
    for announcement in (to_new, from_old) if first == "old group" else (from_old, to_new):
        telegram.push({"message": announcement})


@pytest.mark.parametrize("first", ["old group", "new supergroup"])
async def test_a_group_upgraded_to_a_supergroup_keeps_its_settings_and_photos(start_bot, telegram, understood, first):
    """Nothing read migrate_to_chat_id / migrate_from_chat_id: the supergroup started over with the defaults
    (indexing on, each sender's language) and /search there found none of the group's photos."""
    from bot.adapter.admin import LABELS
    from clipchat.i18n import name_of, translator

    await start_bot()
    old, new = OLD_GROUP, SUPERGROUP
    admin, member = user(41), user(42)
    telegram.admins[old["id"]] = telegram.admins[new["id"]] = {admin["id"]}
    before = understood[0]
    posted = send_photo(telegram, old, member, before.image, caption=f"@{USERNAME} look")
    await last_reply_after(telegram, old["id"], 1)
    send_text(telegram, old, admin, "/settings index off")
    send_text(telegram, old, admin, "/settings language es")
    await telegram.wait_replies(old["id"], 3)

    announce_upgrade(telegram, old, new, admin, first)
    send_text(telegram, new, admin, "/settings")  # the admin's updates run in order: after both announcements
    shown = await last_reply_after(telegram, new["id"], 1)
    es = translator("es")
    assert es("{setting}: off.", setting=es(LABELS["index_photos"])) in shown, shown
    assert es("Language: {language}.", language=name_of("es")) in shown, shown
    send_text(telegram, new, member, f"/search {before.scene.caption}")
    found = await telegram.wait_for(lambda: telegram.sent("sendPhoto", new["id"]), what="a search result")
    assert found[0].params["photo"] == posted["photo"][-1]["file_id"]


async def test_a_banned_group_upgraded_by_a_banned_owner_stays_banned(start_bot, telegram, bot_settings, caplog):
    """The upgrade is moved before the access check. Refused there, like any update from a banned person,
    both announcements would have left the group's ban (and settings) on the old id, and let the group back
    in under its new one."""
    caplog.set_level(logging.INFO)  # refusals (the adapter) and moves (the core) are logged
    await start_bot(bot_settings.model_copy(update={"admin_ids": [OPERATOR]}))
    owner, member = user(43), user(44)
    for banned in (OLD_GROUP["id"], owner["id"]):
        send_text(telegram, private(OPERATOR), user(OPERATOR), f"/ban {banned}")
    await telegram.wait_replies(OPERATOR, 2)
    announce_upgrade(telegram, OLD_GROUP, SUPERGROUP, owner)
    await eventually(
        lambda: f"group {OLD_GROUP['id']} became supergroup {SUPERGROUP['id']}" in caplog.text, what="the move"
    )
    send_text(telegram, SUPERGROUP, member, "/help")
    await eventually(
        lambda: f"refused update from user 44 in chat {SUPERGROUP['id']} (banned)" in caplog.text,
        what="the supergroup refused as its group was",
    )
