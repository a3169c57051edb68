"""Talking about photos already seen: questions, /read, /caption, /tags, /mood and /search. What is said about a photo
posted behind a spoiler goes behind a spoiler too (`Said`)."""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass

from clipchat.i18n import N_, translator
from clipchat.kinds import ChatKind, MediaKind
from dialogue import Answer, Conversation
from storage import (
    ImageRecord,
    UsageKind,
    add_sent_photos,
    album_of,
    forget_count,
    image_exists,
    image_under_discussion,
    recent_turns,
    search_images,
    write_with_retry,
)
from storage.reindex import photos_waiting, reindex_running
from vision.models.tagger import parse_label_list

from ..engine import AnswerRequest, ClassifyRequest, Draft, MoodRequest, TextRequest
from . import pixels, quotas, records, text
from .incoming import Chat, Where
from .photos import CONTEXT_TURNS, add_exchange
from .services import Services
from .text import Said

NO_PHOTO = N_("I don't have a photo here yet. Send one, or reply to a photo with the command.")
NOTHING_TO_TAG = N_("Nothing stands out clearly enough to tag.")
NO_PHOTOS_TO_SEARCH = N_("I haven't seen any photos in this chat yet (or they were deleted).")
# After the operator changed CLIP, photos seen before are searchable once `clipchat db reindex` re-embedded them.
REINDEXING = N_(
    "I'm re-indexing this chat's earlier photos for my upgraded eyes ({count} still to go); "
    "please search again in a few minutes."
)
# Not saying which label: saying it back is what the refusal is for
LINK_LABEL = N_("I weigh plain words, not links or @names. Name what may be in the photo, like: /tags cat, dog, fox")
MAX_SEARCH_CHARS = 300
# What /read asks about the photo under discussion: the READ route (`dialogue.routing`) takes it to the answer
# model that sees the photo, as "what does it say?" is taken; remembered as this question in the conversation.
READ_REQUEST = "Read the text in the photo."


@dataclass(frozen=True)
class Found:
    """A photo /search sends back: by its Telegram file id, with the method that file id belongs to.
    A spoiler photo goes back behind a spoiler, its caption (the models' description of it) hidden too."""

    file_id: str
    media_kind: MediaKind
    caption: str
    image_id: int  # the stored photo, which a reply to the message sending it back asks about
    spoiler: bool = False


@dataclass(frozen=True)
class Search:
    """What /search answers: the photos found, and a note said after them (or instead, when none was)."""

    found: list[Found]
    note: str | None = None


async def thread(
    services: Services, where: Where, reply_to: int | None = None
) -> tuple[ImageRecord | None, Conversation]:
    """The photo under discussion and the recent turns of this user in this chat (and topic)."""
    image, conversation, _forgotten = await _thread(services, where, reply_to)
    return image, conversation


async def _thread(
    services: Services, where: Where, reply_to: int | None = None
) -> tuple[ImageRecord | None, Conversation, int]:
    """`thread`, and the count of /forgets, which the model requests carry so that no process answers
    from a cache made before one (`engine.Models`)."""
    image, conversation, forgotten, _album = await _album_thread(services, where, reply_to)
    return image, conversation, forgotten


async def _album_thread(
    services: Services, where: Where, reply_to: int | None = None
) -> tuple[ImageRecord | None, Conversation, int, list[ImageRecord]]:
    """`_thread`, and the album the photo under discussion was posted in (in order; empty for a photo sent
    alone), which the dialogue asks across ("which one is red?") and names photos of by position."""
    async with services.reading() as session:
        image = await image_under_discussion(session, where.chat_id, where.thread_user, reply_to, where.topic)
        turns = await recent_turns(session, where.chat_id, where.thread_user, CONTEXT_TURNS, where.topic)
        forgotten = await forget_count(session)
        album = await album_of(session, image) if image is not None else []
    if len(album) < 2 or image is None or image.id not in [photo.id for photo in album]:
        album = []
    conversation = Conversation(
        image=image.facts() if image else None,
        turns=tuple((turn.role, turn.text) for turn in turns),
        album=tuple(photo.facts() for photo in album),
        position=[photo.id for photo in album].index(image.id) if album and image else None,
    )
    return image, conversation, forgotten, album


async def on_question(services: Services, where: Where, question: str, reply_to: int | None, chat: Chat) -> None:
    """Answer a follow-up about the photo under discussion, and remember the exchange."""
    await quotas.spend(services, where, UsageKind.QUESTIONS)
    most = services.settings.max_question_chars
    question, cut = question[:most], len(question) > most  # the model reads a bounded prompt anyway
    async with chat.working():
        image, conversation, forgotten, album = await _album_thread(services, where, reply_to)
        photo = await pixels.photo_of(services, chat, image, forgotten)  # None unless the answer model sees images
        request = AnswerRequest(conversation, question, forgotten, photo=photo)
        answer = await _written(services, where, request, chat, image)
    language = await records.language(services, where)
    _ = translator(language)
    note = "\n\n" + _("(I read only the first {count} characters of your message.)", count=most) if cut else ""
    about = [album[p] for p in answer.details.get("photos", ()) if p < len(album)] or [image] if album else [image]
    if album and isinstance(answer.details.get("photo"), int) and answer.details["photo"] < len(album):
        image = album[answer.details["photo"]]  # "the second one": under discussion from now on
        about = [image]
    spoiler = any(_spoiler(photo) for photo in about)
    sent = await chat.reply(text.answered(answer, language, spoiler=spoiler) + note)
    await write_with_retry(
        services.sessions,
        lambda session: add_exchange(session, where, question, answer.text, image.id if image else None, sent),
    )


async def read(services: Services, where: Where, reply_to: int | None, chat: Chat) -> None:
    """/read: the text in the photo under discussion (or the one replied to), as a question asking for it."""
    await on_question(services, where, READ_REQUEST, reply_to, chat)


async def _written(
    services: Services, where: Where, request: AnswerRequest, chat: Chat, image: ImageRecord | None
) -> Answer:
    """The checked answer. In a private chat its text goes out as drafts while the model writes it: at most one
    every `draft_every_ms` (Telegram animates the change from one to the next), and only when words were added;
    the reply that follows may say otherwise, for it is what CLIP's check accepted; after a draft that failed, the
    rest of the answer goes without. A group or channel gets the answer whole: its 20 messages a minute are for
    answers."""
    if where.chat_kind != ChatKind.PRIVATE:
        return await services.models.answer(request)
    stream = services.models.answer_stream(request)
    every = services.settings.draft_every_ms / 1000
    shown, due, drafting = "", 0.0, True
    try:
        async for event in stream:
            if not isinstance(event, Draft):
                return event
            if drafting and len(event.text) > len(shown) and time.monotonic() >= due:
                shown, due = event.text, time.monotonic() + every
                drafting = await chat.draft(Said.about(event.text, _spoiler(image)))
    finally:
        if isinstance(stream, AsyncGenerator):  # let it go now (its sampling stops), not when collected
            await stream.aclose()
    raise RuntimeError("the answer stream ended without the answer")


def _spoiler(image: ImageRecord | None) -> bool:
    """Whether what the bot says about `image` goes behind a spoiler: its sender posted it behind one."""
    return image is not None and image.spoiler


async def caption(services: Services, where: Where, reply_to: int | None) -> Said:
    image, conversation = await thread(services, where, reply_to)
    language = await records.language(services, where)
    if conversation.image is None:
        return Said(translator(language)(NO_PHOTO))
    described = Said.about(
        text.describe(conversation.image, language=language, reads=services.models.sees_images), _spoiler(image)
    )
    return text.noting_model_language(described, language)


async def tags(services: Services, where: Where, labels_text: str, reply_to: int | None) -> Said:
    """The photo's stored tags, or with labels given, how well each label fits it."""
    image, conversation, forgotten = await _thread(services, where, reply_to)
    language = await records.language(services, where)
    if conversation.image is None:
        return Said(translator(language)(NO_PHOTO))
    found = conversation.image.topical  # the note that it shows text is said with the caption, not here
    if labels_text.strip():
        labels = parse_label_list(labels_text)
        refusal = _label_refusal(labels, services.settings.max_labels, services.settings.max_label_chars, language)
        if refusal:
            return Said(refusal)
        await quotas.spend(services, where, UsageKind.QUESTIONS)
        asked = ClassifyRequest(conversation.image.embedding, tuple(labels), forgotten)
        found = (await services.models.classify(asked)).tags
    if not found:
        return Said(translator(language)(NOTHING_TO_TAG))
    weighed = "\n".join(f"{tag.label}: {tag.score:.0%}" for tag in found[:10])
    return text.noting_model_language(Said.about(weighed, _spoiler(image)), language)


def _label_refusal(labels: list[str], most: int, longest: int, language: str) -> str | None:
    """Why these labels are too much work to weigh, or None. Checked before any model runs."""
    _ = translator(language)
    if len(labels) > most:
        return _(
            "I can weigh up to {most} labels at once, and you gave {given}. Please pick the ones you care about most.",
            most=most,
            given=len(labels),
        )
    if any(len(label) > longest for label in labels):
        return _(
            "Each label can be at most {longest} characters long. Short names work best, like: /tags cat, dog, fox",
            longest=longest,
        )
    if any(text.looks_like_link(label) for label in labels):  # said back, they would be links in the bot's name
        return _(LINK_LABEL)
    return None


async def mood(services: Services, where: Where, reply_to: int | None) -> Said:
    image, conversation = await thread(services, where, reply_to)
    language = await records.language(services, where)
    if conversation.image is None:
        return Said(translator(language)(NO_PHOTO))
    await quotas.spend(services, where, UsageKind.QUESTIONS)
    answer: Answer = await services.models.mood(MoodRequest(conversation.image.embedding))
    return text.answered(answer, language, spoiler=_spoiler(image))


async def still_there(services: Services, found: Found) -> bool:
    """Whether a /search result is still stored: its sender may have made the bot forget it since the search
    (their /forget runs in their own queue), and a forgotten photo is never sent back."""
    async with services.reading() as session:
        return await image_exists(session, found.image_id)


async def shown(services: Services, where: Where, sent: list[tuple[int, Found]]) -> None:
    """Remember which photo each of the bot's messages (by message id) sent back, so that a reply to one
    asks about that photo; one forgotten since it was sent is not remembered."""
    pairs = [(message_id, found.image_id) for message_id, found in sent]
    if pairs:
        await write_with_retry(services.sessions, lambda session: add_sent_photos(session, where.chat_id, pairs))


async def search(services: Services, where: Where, phrase: str) -> Search:
    """This chat's photos that best match `phrase`: the best one, plus any nearly as good; and, when
    some of the chat's photos were seen by an earlier CLIP, that they could not be searched."""
    await quotas.spend(services, where, UsageKind.QUESTIONS)
    chat_id = where.chat_id
    async with services.reading() as session:
        forgotten = await forget_count(session)
    vector = await services.models.embed_text(TextRequest(phrase[:MAX_SEARCH_CHARS], forgotten))
    identity = services.models.identity
    since = await records.searchable_since(services, where)  # a group's earlier history is not theirs to see
    async with services.reading() as session:
        hits = await search_images(
            session, services.index, chat_id, identity, vector.vector, k=services.settings.search_results, since=since
        )
        waiting = await photos_waiting(session, identity, chat_id)
        running = waiting > 0 and await reindex_running(session, identity, chat_id)
    _ = translator(await records.language(services, where))
    found = []
    if hits:
        best = hits[0][1]
        found = [
            Found(
                record.file_id,
                record.media_kind,
                _("{caption} (match {score:.2f})", caption=record.caption, score=score)[: text.CAPTION_LIMIT],
                record.id,
                record.spoiler,
            )
            for record, score in hits
            if score >= best - 0.02
        ]
    if not waiting:
        return Search(found, None if found else _(NO_PHOTOS_TO_SEARCH))
    if found and running:  # never promise a re-indexing nobody is running
        return Search(
            found,
            _.plural(
                "(I searched only the photos I've re-indexed so far; {count} earlier photo is still to come.)",
                "(I searched only the photos I've re-indexed so far; {count} earlier photos are still to come.)",
                waiting,
                count=waiting,
            ),
        )
    if found:
        return Search(
            found,
            _.plural(
                "(I searched only the photos I've seen since I got new eyes; {count} earlier "
                "photo is searchable again once the bot's operator re-indexes them.)",
                "(I searched only the photos I've seen since I got new eyes; {count} earlier "
                "photos are searchable again once the bot's operator re-indexes them.)",
                waiting,
                count=waiting,
            ),
        )
    if running:
        return Search(found, _(REINDEXING, count=waiting))
    return Search(
        found,
        _.plural(
            "I can't search this chat's {count} earlier photo yet: I got new eyes, and they "
            "are searchable again once the bot's operator re-indexes them.",
            "I can't search this chat's {count} earlier photos yet: I got new eyes, and they "
            "are searchable again once the bot's operator re-indexes them.",
            waiting,
            count=waiting,
        ),
    )
