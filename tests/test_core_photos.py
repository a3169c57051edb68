"""The core's rules for photos, on fixed model results: who is answered, what is kept quietly for /search,
what is skipped before any model runs. (The whole bot on the trained world: test_bot.py.)"""

from __future__ import annotations

import dataclasses

from bot.core import photos, records, talk
from bot.core.incoming import Where
from bot.core.quotas import OverBudget
from bot.core.settings import BotSettings
from clipchat.errors import BadImage
from dialogue import Answer
from tests.fakes import PHOTO, PRIVATE, FakeChat, FakeModels, fake_services, in_group, photo_message

ALICE, BOB = 21, 22
CHANNEL = Where(chat_id=-200, chat_kind="channel", user_id=None)


async def kept(services, where: Where) -> int:
    """How many photos /search can find in this chat."""
    found = await talk.search(services, dataclasses.replace(where, user_id=where.user_id or 1), "anything")
    return len(found.found)


async def test_admission_answers_the_addressed_keeps_the_rest_and_skips_when_told() -> None:
    async with fake_services() as services:
        assert await photos.admit(services, photo_message(PRIVATE)) == photos.Admission.ANSWER
        assert await photos.admit(services, photo_message(in_group(ALICE), addressed=True)) == photos.Admission.ANSWER
        assert await photos.admit(services, photo_message(in_group(ALICE), addressed=False)) == photos.Admission.KEEP
        await records.set_switch(services, in_group(ALICE), "auto_caption", True)
        assert await photos.admit(services, photo_message(in_group(ALICE), addressed=False)) == photos.Admission.ANSWER
        await records.set_switch(services, in_group(ALICE), "auto_caption", False)
        await records.set_switch(services, in_group(ALICE), "index_photos", False)
        assert await photos.admit(services, photo_message(in_group(ALICE), addressed=False)) == photos.Admission.SKIP
        assert await photos.admit(services, photo_message(in_group(ALICE), addressed=True)) == photos.Admission.ANSWER
        assert services.models.calls == [], "admission runs no model"


async def test_a_private_photo_is_described_and_remembered_for_questions() -> None:
    async with fake_services() as services:
        chat = FakeChat()
        await photos.on_photo(services, photo_message(PRIVATE), chat)
        assert len(chat.replies) == 1 and PHOTO.caption.capitalize().rstrip(".") in chat.replies[0]
        assert "#red" in chat.replies[0]
        assert chat.busy == 1
        image, conversation = await talk.thread(services, PRIVATE)
        assert image is not None and image.file_id == "file-1"
        assert conversation.turns == (("user", "[photo]"), ("assistant", chat.replies[0]))


async def test_a_question_in_the_caption_is_answered_with_the_description_beside_it() -> None:
    async with fake_services() as services:
        chat = FakeChat()
        await photos.on_photo(services, photo_message(PRIVATE, "what colour is it?"), chat)
        [reply] = chat.replies
        assert reply.startswith("It is red.") and "#red" in reply
        assert services.models.calls == ["describe", "answer"]


async def test_what_is_this_is_answered_by_the_description_alone() -> None:
    described = Answer("A small red circle on a grass background.", route="describe")
    async with fake_services(models=FakeModels(answer_given=described)) as services:
        chat = FakeChat()
        await photos.on_photo(services, photo_message(PRIVATE, "what is this?"), chat)
        assert chat.replies == [described.text], "the description, said once"


async def test_a_group_photo_nobody_addressed_is_kept_for_search_without_a_word() -> None:
    async with fake_services() as services:
        chat = FakeChat()
        await records.seen(services, in_group(BOB).chat_id, [BOB])  # Bob was in the group before the photo
        await photos.on_photo(services, photo_message(in_group(ALICE), "look", addressed=False), chat)
        assert chat.replies == [] and chat.busy == 0
        assert await kept(services, in_group(BOB)) == 1
        _, conversation = await talk.thread(services, in_group(ALICE))
        assert conversation.turns == (), "a photo kept quietly is no conversation"


async def test_a_group_that_turned_indexing_off_has_its_photos_neither_looked_at_nor_kept() -> None:
    async with fake_services() as services:
        await records.set_switch(services, in_group(ALICE), "index_photos", False)
        chat = FakeChat()
        await photos.on_photo(services, photo_message(in_group(ALICE), addressed=False), chat)
        assert chat.replies == [] and services.models.calls == []
        assert await kept(services, in_group(ALICE)) == 0


async def test_an_unreadable_photo_nobody_addressed_is_dropped_quietly() -> None:
    models = FakeModels(refuse_photos=BadImage("damaged", "That file is damaged."))
    async with fake_services(models=models) as services:
        chat = FakeChat()
        await photos.on_photo(services, photo_message(in_group(ALICE), addressed=False), chat)
        assert chat.replies == [] and await kept(services, in_group(ALICE)) == 0


async def test_a_channel_gets_alt_text_only_when_it_turned_it_on() -> None:
    async with fake_services() as services:
        channel = FakeChat()
        await photos.on_channel_post(services, photo_message(CHANNEL, "Our garden", addressed=False), channel)
        assert channel.captions == [] and services.models.calls == []
        await records.set_switch(services, CHANNEL, "alt_text", True)
        await photos.on_channel_post(services, photo_message(CHANNEL, "Our garden", addressed=False), channel)
        [caption] = channel.captions
        assert caption.startswith("Our garden") and "red circle" in caption
        assert channel.replies == []


async def test_an_album_reply_has_a_line_per_photo_and_skips_quiet_refusals() -> None:
    async with fake_services() as services:
        chat = FakeChat()
        where = PRIVATE
        files = [photo_message(where, message_id=n).photo for n in range(1, 5)]
        results = [
            (files[0], PHOTO),
            (files[1], BadImage("damaged", "That file is damaged.")),
            (files[2], RuntimeError("a bug")),
            (files[3], OverBudget("", detail="told already")),  # said earlier today: no line
        ]
        await photos.on_album(services, where, "", True, results, chat)
        [reply] = chat.replies
        numbered = [line for line in reply.splitlines() if line[:1].isdigit()]
        assert numbered[0] == "3 photos:"
        assert numbered[1].startswith("1. ") and "red circle" in numbered[1]
        assert numbered[2:] == [
            "2. That file is damaged.",
            "3. Sorry, something went wrong while I looked at this one.",
        ]
        image, _ = await talk.thread(services, where)
        assert image is not None and image.file_id == files[0].file_id, "only the photo that was read is kept"


async def test_replies_follow_the_chats_language_and_say_the_caption_is_english() -> None:
    async with fake_services(BotSettings(_env_file=None)) as services:
        chat = FakeChat()
        spanish = dataclasses.replace(PRIVATE, language="es")
        await photos.on_photo(services, photo_message(spanish), chat)
        assert "inglés" in chat.replies[-1], chat.replies[-1]
        await records.set_switch(services, spanish, "language", "en")
        await photos.on_photo(services, photo_message(spanish, message_id=2), chat)
        assert "English" not in chat.replies[-1] and "inglés" not in chat.replies[-1]
