"""Talking about photos already seen (bot/core/talk.py) on fixed model results: which photo a question or
command is about, what is refused before any model runs, and what /search says.
(Through the whole bot on the trained world: test_bot.py.)"""

from __future__ import annotations

import dataclasses
import time

from bot.core import photos, records, talk
from bot.core.settings import BotSettings
from clipchat.facts import Tag
from storage import write_with_retry
from storage.reindex import start_run
from tests.fakes import PHOTO, PRIVATE, FakeChat, FakeModels, fake_services, in_group, photo_message, unit_vector

BLUE_SQUARE = dataclasses.replace(
    PHOTO, caption="a large blue square on a sand background.", tags=(Tag("blue", 0.9, "colour"),)
)


async def two_photos(services, chat: FakeChat, where=PRIVATE) -> None:
    """A red circle (message 1, answered by reply 1001), then a blue square (message 2, reply 1002)."""
    services.models.photos[b"file-2"] = BLUE_SQUARE
    await photos.on_photo(services, photo_message(where, message_id=1, addressed=True), chat)
    await photos.on_photo(services, photo_message(where, message_id=2, addressed=True), chat)


async def test_a_question_is_about_the_latest_photo_unless_it_replies_to_another() -> None:
    async with fake_services() as services:
        chat = FakeChat()
        await two_photos(services, chat)
        await talk.on_question(services, PRIVATE, "what colour is it?", None, chat)
        await talk.on_question(services, PRIVATE, "and this one?", 1001, chat)  # a reply to the first answer
        first, second = services.models.questions
        assert first.conversation.image.caption == BLUE_SQUARE.caption
        assert second.conversation.image.caption == PHOTO.caption
        assert second.conversation.turns[-2:] == (("user", "what colour is it?"), ("assistant", "It is red."))
        assert chat.replies[-1] == "It is red."


async def test_each_user_in_a_group_talks_about_their_own_photo() -> None:
    async with fake_services() as services:
        chat, alice, bob = FakeChat(), in_group(21), in_group(22)
        services.models.photos[b"file-2"] = BLUE_SQUARE
        await photos.on_photo(services, photo_message(alice, message_id=1, addressed=True), chat)
        await photos.on_photo(services, photo_message(bob, message_id=2, addressed=True), chat)
        assert (await talk.caption(services, alice, None)).text.startswith("A small red circle")
        assert (await talk.caption(services, bob, None)).text.startswith("A large blue square")


async def test_a_long_question_is_cut_and_the_user_is_told() -> None:
    async with fake_services(BotSettings(_env_file=None, max_question_chars=50)) as services:
        chat = FakeChat()
        await talk.on_question(services, PRIVATE, "why " * 40, None, chat)
        assert len(services.models.questions[0].question) == 50
        assert chat.replies[-1].endswith("(I read only the first 50 characters of your message.)")


async def test_commands_without_a_photo_say_how_to_send_one_and_run_no_model() -> None:
    async with fake_services() as services:
        for answer in (
            await talk.caption(services, PRIVATE, None),
            await talk.tags(services, PRIVATE, "cat, dog", None),
            await talk.mood(services, PRIVATE, None),
        ):
            assert answer.text == talk.NO_PHOTO and not answer.hidden
        assert services.models.calls == []


async def test_tags_are_the_stored_ones_or_weigh_the_labels_given() -> None:
    async with fake_services() as services:
        await two_photos(services, FakeChat())
        assert (await talk.tags(services, PRIVATE, "", None)).text == "blue: 90%"
        assert services.models.calls == ["describe", "describe"], "stored tags need no model"
        assert (await talk.tags(services, PRIVATE, "cat, dog", 1001)).text == "cat: 50%\ndog: 50%"
        assert services.models.calls[-1] == "classify"


async def test_too_many_or_too_long_labels_are_refused_before_any_model_runs_or_budget_is_spent() -> None:
    async with fake_services(BotSettings(_env_file=None, max_labels=3, max_label_chars=10)) as services:
        await two_photos(services, FakeChat())
        many = (await talk.tags(services, PRIVATE, "a, b, c, d", None)).text
        assert "up to 3 labels" in many and "you gave 4" in many
        long = (await talk.tags(services, PRIVATE, "a, an extraordinarily long label", None)).text
        assert "at most 10 characters" in long
        assert "classify" not in services.models.calls
        assert (await _questions_used(services)) == 0


async def test_mood_answers_from_the_photos_vector() -> None:
    async with fake_services() as services:
        await two_photos(services, FakeChat())
        assert (await talk.mood(services, PRIVATE, None)).text == "It looks calm."
        assert await _questions_used(services) == 1


async def test_search_finds_this_chats_photos_only() -> None:
    async with fake_services() as services:
        await two_photos(services, FakeChat())
        found = await talk.search(services, PRIVATE, "a red circle")
        assert {hit.file_id for hit in found.found} == {"file-1", "file-2"} and found.note is None
        assert found.found[0].caption.endswith("(match 1.00)")
        elsewhere = await talk.search(services, in_group(PRIVATE.user_id), "a red circle")
        assert elsewhere.found == [] and elsewhere.note == talk.NO_PHOTOS_TO_SEARCH


async def test_search_after_a_change_of_clip_says_what_it_could_not_search() -> None:
    async with fake_services() as services:
        await two_photos(services, FakeChat())
        services.models.identity = "new-clip"  # the operator changed CLIP: both photos wait for `db reindex`
        services.models.facts = dataclasses.replace(PHOTO, embedding=unit_vector(1, 0, 0, 0), model="new-clip")
        nothing = await talk.search(services, PRIVATE, "a red circle")
        assert nothing.found == [] and "can't search this chat's 2 earlier photos yet" in nothing.note
        await write_with_retry(services.sessions, lambda session: start_run(session, "new-clip", PRIVATE.chat_id))
        running = await talk.search(services, PRIVATE, "a red circle")
        assert "re-indexing this chat's earlier photos" in running.note and "2 still to go" in running.note
        await photos.on_photo(services, photo_message(PRIVATE, message_id=3), FakeChat())
        some = await talk.search(services, PRIVATE, "a red circle")
        assert [hit.file_id for hit in some.found] == ["file-3"] and "2 earlier photos are still to come" in some.note


async def test_reset_forgets_the_conversation_but_not_the_photos() -> None:
    async with fake_services() as services:
        chat = FakeChat()
        await two_photos(services, chat)
        await talk.on_question(services, PRIVATE, "what colour?", None, chat)
        assert await records.reset(services, PRIVATE) >= 2
        _, conversation = await talk.thread(services, PRIVATE)
        assert conversation.turns == ()
        assert len((await talk.search(services, PRIVATE, "a red circle")).found) == 2


async def _questions_used(services) -> int:
    from bot.core import quotas

    return (await quotas.usage_of(services, "user", PRIVATE.user_id)).used.get("questions", 0)


async def test_a_private_answer_is_drafted_as_it_grows_at_most_every_interval_and_a_groups_comes_whole() -> None:
    """The model writes a word every 40 ms and once takes one back: drafts go out no more often than every
    `draft_every_ms` and only when words were added; the reply is the checked answer, whatever they said."""
    words = [
        "a",
        "small",
        "red",
        "circle",
        "on",
        "a",
        "grass",
        "background",
        ",",
        "as",
        "far",
        "as",
        "I",
        "can",
        "tell",
        "from",
        "here",
    ]
    texts = [" ".join(words[: n + 1]) for n in range(len(words))]
    texts.insert(5, texts[3])  # taken back: never shown
    models = FakeModels(drafts_given=tuple((0.04, text) for text in texts))
    async with fake_services(BotSettings(_env_file=None, draft_every_ms=300), models) as services:
        chat = FakeChat()
        await photos.on_photo(services, photo_message(PRIVATE, message_id=1), chat)
        started = time.monotonic()
        await talk.on_question(services, PRIVATE, "what is going on?", None, chat)
        took = time.monotonic() - started
        assert chat.drafts[0] == texts[0]  # the first words at once
        assert 2 <= len(chat.drafts) <= took / 0.3 + 1
        assert all(len(later) > len(earlier) for earlier, later in zip(chat.drafts, chat.drafts[1:]))
        assert chat.replies[-1] == "It is red."
        shown = len(chat.drafts)
        await photos.on_photo(services, photo_message(in_group(5), message_id=2, addressed=True), chat)
        await talk.on_question(services, in_group(5), "what is going on?", None, chat)
        assert len(chat.drafts) == shown and chat.replies[-1] == "It is red."
