"""What the bot does, as plain async functions over the services; the Telegram handlers call these.

Inference never runs inside a database transaction: models first, then one short
write (retried if the database is restarting), so a slow photo holds no connection.
No `telegram` import here: the console (`clipchat chat`) and tests drive these too.
"""

from __future__ import annotations

from dataclasses import dataclass

from dialogue import Answer, Conversation, ImageFacts, from_storage
from storage import (NewImage, add_turn, chat_switches, forget_user, image_under_discussion, recent_turns,
                     reset_thread, save_image, search_images, set_chat_switch, write_with_retry)
from storage.chat_settings import Switches
from storage.models import ImageRecord
from vision.tagger import parse_label_list

from .inference import Seen
from .services import Services

CONTEXT_TURNS = 12  # recent turns fed back to the dialogue model


@dataclass(frozen=True)
class Where:
    chat_id: int
    chat_kind: str  # private, group, supergroup or channel
    user_id: int | None  # None for channel posts


@dataclass(frozen=True)
class PhotoFile:
    message_id: int
    file_id: str
    file_unique_id: str
    media_kind: str = "photo"  # or "document"
    media_group_id: str | None = None


def facts(seen: Seen, identity: str) -> ImageFacts:
    return ImageFacts(caption=seen.caption, tags=tuple(t["label"] for t in seen.tags), embedding=seen.embedding,
                      embedding_model=identity)


async def thread(services: Services, where: Where, reply_to: int | None = None) -> tuple[ImageRecord | None,
                                                                                        Conversation]:
    """The photo under discussion and the recent turns of this user in this chat."""
    async with services.sessions() as session:
        image = await image_under_discussion(session, where.chat_id, where.user_id, reply_to)
        turns = await recent_turns(session, where.chat_id, where.user_id, limit=CONTEXT_TURNS)
    return image, from_storage(image, turns)


async def ask(services: Services, where: Where, question: str, reply_to: int | None = None) -> tuple[Answer,
                                                                                                  int | None]:
    """Answer a follow-up question; returns the answer and the id of the photo it was about."""
    image, conversation = await thread(services, where, reply_to)
    return await services.inference.answer(conversation, question), image.id if image else None


async def ask_about_new_photo(services: Services, where: Where, seen: Seen, question: str) -> Answer:
    async with services.sessions() as session:
        turns = await recent_turns(session, where.chat_id, where.user_id, limit=CONTEXT_TURNS)
    conversation = Conversation(image=facts(seen, services.inference.identity),
                                turns=tuple((turn.role, turn.text) for turn in turns))
    return await services.inference.answer(conversation, question)


async def remember_photos(services: Services, where: Where, photos: list[tuple[PhotoFile, Seen]],
                          user_text: str, reply: str, reply_message_id: int | None) -> list[int]:
    """Store the photos, what the user said and what the bot answered; returns the image ids."""
    async def work(session) -> list[int]:
        ids = []
        for photo, seen in photos:
            record = await save_image(session, NewImage(
                chat_id=where.chat_id, sender_id=where.user_id, message_id=photo.message_id, file_id=photo.file_id,
                file_unique_id=photo.file_unique_id, caption=seen.caption, tags=seen.tags,
                embedding=seen.embedding, embedding_model=services.inference.identity,
                media_group_id=photo.media_group_id, media_kind=photo.media_kind), chat_kind=where.chat_kind)
            ids.append(record.id)
        if where.user_id is not None and reply:  # a photo kept silently for /search is not a conversation
            await _add_exchange(session, where, user_text or "[photo]", reply, ids[-1] if ids else None,
                                reply_message_id)
        return ids

    return await write_with_retry(services.sessions, work)


async def remember_exchange(services: Services, where: Where, question: str, reply: str, image_id: int | None,
                            reply_message_id: int | None) -> None:
    await write_with_retry(services.sessions, lambda session: _add_exchange(
        session, where, question, reply, image_id, reply_message_id))


async def _add_exchange(session, where: Where, said: str, reply: str, image_id: int | None,
                        reply_message_id: int | None) -> None:
    await add_turn(session, where.chat_id, where.user_id, "user", said, image_id, where.chat_kind)
    await add_turn(session, where.chat_id, where.user_id, "assistant", reply, image_id, where.chat_kind,
                   message_id=reply_message_id)


async def search(services: Services, chat_id: int, phrase: str) -> list[tuple[ImageRecord, float]]:
    """This chat's photos that best match `phrase`: the best one, plus any nearly as good."""
    vector = await services.inference.embed_text(phrase)
    async with services.sessions() as session:
        hits = await search_images(session, services.index, chat_id, services.inference.identity, vector,
                                   k=services.settings.search_results)
    if not hits:
        return []
    best = hits[0][1]
    return [(record, score) for record, score in hits if score >= best - 0.02]


async def tags_for(services: Services, where: Where, labels_text: str, reply_to: int | None) -> tuple[ImageRecord
                                                                                                     | None, list]:
    """The photo's stored tags, or with labels given, how well each label fits it."""
    image, conversation = await thread(services, where, reply_to)
    if image is None or not labels_text.strip():
        return image, list(image.tags) if image else []
    labels = parse_label_list(labels_text)
    return image, await services.inference.classify(conversation.image.embedding, labels)


async def mood(services: Services, where: Where, reply_to: int | None) -> tuple[ImageRecord | None, Answer | None]:
    image, conversation = await thread(services, where, reply_to)
    if image is None:
        return None, None
    return image, await services.inference.mood(conversation.image.embedding)


async def reset(services: Services, where: Where) -> int:
    return await write_with_retry(services.sessions, lambda session: reset_thread(session, where.chat_id,
                                                                                   where.user_id))


async def forget(services: Services, user_id: int):
    return await write_with_retry(services.sessions, lambda session: forget_user(session, user_id))


async def switches(services: Services, chat_id: int) -> Switches:
    async with services.sessions() as session:
        return await chat_switches(session, chat_id)


async def set_switch(services: Services, where: Where, name: str, value: bool, by: int | None) -> Switches:
    return await write_with_retry(services.sessions, lambda session: set_chat_switch(
        session, where.chat_id, where.chat_kind, name, value, by))
