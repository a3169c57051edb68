"""Answers written as they stream: a private chat sees the language model's answer grow in a Telegram draft
(sendMessageDraft), then gets the answer CLIP's check accepted; a group gets the answer whole. End to end on the
world's models (its tiny chat model answers open questions) against the fake Bot API."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
import time

import torch
from sqlalchemy import select, update

from clipchat.facts import PhotoFacts
from dialogue import Conversation, answer_open
from dialogue.conversation import AnswerOptions
from storage import ImageRecord
from tests.bot_helpers import behind_spoilers, eventually, jpeg, send_photo, send_text
from tests.conftest import HeldOut
from tests.fake_telegram import USERNAME, group, private, user
from tests.world.scenes import SHAPES
from vision import load_image

OPEN_QUESTION = "tell me about the shape"  # no CLIP route answers it: the chat model writes the answer
OTHER_QUESTION = "what is the background like?"
DRAFT_EVERY_S = 0.3  # the default draft_every_ms
OPTIONS = AnswerOptions()  # as the bot asks


async def photo_seen(telegram, chat: dict, sender: dict, image) -> None:
    send_photo(telegram, chat, sender, image, caption=None if chat["type"] == "private" else f"@{USERNAME}")
    await telegram.wait_replies(chat["id"], 1)


async def test_a_private_answer_is_drafted_while_it_is_written_and_a_group_gets_it_whole(
    start_bot, telegram, understood, figure
):
    await start_bot()
    chat, alice = private(41), user(41)
    await photo_seen(telegram, chat, alice, understood[0].image)
    asked_at = time.monotonic()
    question = send_text(telegram, chat, alice, OPEN_QUESTION)
    answer = (await telegram.wait_replies(41, 2))[-1]
    drafts = telegram.drafts(41)
    assert drafts, "no draft reached Telegram"
    assert drafts[0].at < answer.at and answer.reply_to == question["message_id"]
    assert {draft.draft_id for draft in drafts} == {question["message_id"]}  # one draft, replaced as it grows
    assert len(drafts) <= (answer.at - drafts[0].at) / DRAFT_EVERY_S + 1
    assert all(len(later.text) > len(earlier.text) for earlier, later in itertools.pairwise(drafts))
    figure("private chat: first draft after the question, s (world's chat model, this CPU)", drafts[0].at - asked_at)
    figure("private chat: the answer after the question, s (world's chat model, this CPU)", answer.at - asked_at)

    room, bob = group(-100410), user(42)
    await photo_seen(telegram, room, bob, understood[1].image)
    send_text(telegram, room, bob, f"@{USERNAME} {OPEN_QUESTION}")
    await telegram.wait_replies(room["id"], 2)
    assert telegram.sent("sendMessageDraft", room["id"], refused=True) == []  # none even tried: answers whole


def misread_shape(world_models, understood) -> tuple[HeldOut, str]:
    """A photo, and a shape it does not show, such that the chat model given facts naming that shape repeats it
    and CLIP, looking at the photo, refuses every such answer: found by asking the world's models, not assumed
    (CI trains a new world, and its tiny CLIP is sure of some shapes only)."""
    for held in understood[:12]:
        facts = world_models.describe([load_image(jpeg(held.image))])[0]
        image = torch.as_tensor(facts.embedding)
        for wrong in (shape for shape in SHAPES if shape != held.scene.shape):
            torch.manual_seed(0)
            reply = answer_open(
                world_models, Conversation(misread(facts, held.scene.shape, wrong)), OPEN_QUESTION, image, OPTIONS
            )
            if "candidates" not in reply.details and wrong in reply.details["refused"].values():
                return held, wrong
    raise AssertionError("CLIP refuses no misread shape the chat model repeats in the first 12 held-out photos")


def misread(facts: PhotoFacts, shape: str, wrong: str) -> PhotoFacts:
    tags = tuple(dataclasses.replace(tag, label=tag.label.replace(shape, wrong)) for tag in facts.tags)
    return dataclasses.replace(facts, caption=facts.caption.replace(shape, wrong), tags=tags)


async def test_a_draft_that_contradicts_the_photo_is_replaced_by_what_clip_accepts(
    start_bot, telegram, bot_settings, world_models, understood
):
    """The captioner misread the shape (the stored facts are made to say another one): the chat model repeats
    the facts it is given, and the drafts show its words; CLIP, looking at the photo, refuses them, and the
    reply says something else."""
    held, wrong = misread_shape(world_models, understood)
    app = await start_bot(bot_settings.model_copy(update={"draft_every_ms": 0}))  # every word shown
    chat, carol = private(43), user(43)
    await photo_seen(telegram, chat, carol, held.image)

    async def stored():
        async with app.bot_data.services.sessions() as session:
            return await session.scalar(select(ImageRecord).where(ImageRecord.chat_id == 43))

    record = await eventually(stored, what="the photo stored (after its reply)", timeout=10)
    lied = misread(record.facts(), held.scene.shape, wrong)
    async with app.bot_data.services.sessions() as session:
        await session.execute(
            update(ImageRecord)
            .where(ImageRecord.id == record.id)
            .values(caption=lied.caption, tags=[dataclasses.asdict(tag) for tag in lied.tags])
        )
        await session.commit()
    send_text(telegram, chat, carol, OPEN_QUESTION)
    answer = (await telegram.wait_replies(43, 2))[-1]
    drafted = [draft.text for draft in telegram.drafts(43)]
    assert any(wrong in text for text in drafted), drafted  # the model wrote what the facts said
    said = answer.text.split("What I can see is:")[0]  # the fallback then recites the (misread) caption
    assert wrong not in said, (drafted, answer.text)


async def test_a_question_sent_while_an_answer_is_being_drafted_is_answered_after_it(start_bot, telegram, understood):
    await start_bot()
    chat, dave = private(44), user(44)
    await photo_seen(telegram, chat, dave, understood[3].image)
    in_flight = telegram.held["sendMessageDraft"] = asyncio.Event()  # the first draft stays on its way
    first = send_text(telegram, chat, dave, OPEN_QUESTION)
    await telegram.wait_for(lambda: telegram.sent("sendMessageDraft", 44), timeout=10, what="a draft in flight")
    second = send_text(telegram, chat, dave, OTHER_QUESTION)
    await asyncio.sleep(0.3)  # time enough for the second question to start, were it not waiting its turn
    assert len(telegram.replies(44)) == 1 and len(telegram.sent("sendMessageDraft", 44)) == 1
    in_flight.set()
    _, answer, later = await telegram.wait_replies(44, 3)
    assert (answer.reply_to, later.reply_to) == (first["message_id"], second["message_id"])
    seconds = [draft for draft in telegram.drafts(44) if draft.draft_id == second["message_id"]]
    assert all(draft.at > answer.at for draft in seconds)


async def test_the_drafts_of_an_answer_about_a_spoiler_photo_are_behind_a_spoiler(start_bot, telegram, understood):
    await start_bot()
    chat, erin = private(45), user(45)
    send_photo(telegram, chat, erin, understood[4].image, spoiler=True)
    await telegram.wait_replies(45, 1)
    send_text(telegram, chat, erin, OPEN_QUESTION)
    await telegram.wait_replies(45, 2)
    drafts = telegram.drafts(45)
    assert drafts and all(behind_spoilers(draft) == [draft.text] for draft in drafts)


async def test_a_draft_telegram_refuses_or_holds_costs_the_answer_nothing_but_its_drafts(
    start_bot, telegram, bot_settings, understood, caplog
):
    """Flood control on a draft (PTB would wait out its retry_after and try again) or a refusal: that answer's
    drafting ends there, logged, and the reply comes at once."""
    caplog.set_level(logging.INFO, logger="bot.adapter.sending")
    await start_bot(bot_settings.model_copy(update={"draft_every_ms": 0}))  # every word would be a draft
    chat, frank = private(46), user(46)
    await photo_seen(telegram, chat, frank, understood[5].image)
    for number, (code, retry_after) in enumerate(((429, 30), (400, 0)), start=2):
        telegram.fail("sendMessageDraft", code=code, retry_after=retry_after)
        caplog.clear()
        asked_at = time.monotonic()
        send_text(telegram, chat, frank, OPEN_QUESTION)
        answer = (await telegram.wait_replies(46, number))[-1]
        assert answer.at - asked_at < 5 and answer.text  # not the 30 s flood control asked of the draft
        assert len(telegram.sent("sendMessageDraft", 46, refused=True)) == number - 1  # one try, then none
        assert "not shown" in caplog.text
