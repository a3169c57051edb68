"""Photos: look at one, answer it (or keep it quietly for /search), albums, and channel alt text.

Models first, then one short write (retried if the database is restarting), so a
slow photo never holds a database connection.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from enum import StrEnum

from sqlalchemy.ext.asyncio import AsyncSession

from clipchat.errors import BadImage, UserError
from clipchat.facts import PhotoFacts
from clipchat.i18n import N_, translator
from clipchat.kinds import Role
from dialogue import Answer, Conversation, RouteKind
from storage import (
    NewImage,
    Switches,
    UsageKind,
    add_turn,
    chat_switches,
    forget_count,
    recent_turns,
    save_image,
    write_with_retry,
)

from ..engine import AnswerRequest, DescribeRequest
from . import pixels, quotas, records, text
from .incoming import Channel, Chat, PhotoFile, PhotoMessage, Where
from .services import Services
from .text import Said

log = logging.getLogger(__name__)
CONTEXT_TURNS = 12  # recent turns fed back to the dialogue model
ALBUM_PHOTO_FAILED = N_("Sorry, something went wrong while I looked at this one.")


class Admission(StrEnum):
    """What to do with a photo, decided before any model runs (`admit`)."""

    ANSWER = "answer"
    KEEP = "keep"  # quietly, for /search: a group photo nobody addressed
    SKIP = "skip"  # neither looked at nor kept: the group turned indexing off


async def look(services: Services, chat: Chat, photo: PhotoFile) -> PhotoFacts:
    """Fetch the photo and describe it, its bytes within the download budget (`core/downloads`)."""
    return await services.downloads.look(
        photo, chat.fetch, lambda data: services.models.describe(DescribeRequest(data))
    )


async def admit(services: Services, message: PhotoMessage) -> Admission:
    """What to do with a photo: answer it, keep it quietly for /search, or skip it. Raises OverBudget
    (which says so once a day, and only to someone who spoke to the bot) past a daily budget."""
    switches = await _switches(services, message.where)
    spoken_to = message.addressed or switches.auto_caption
    if not spoken_to and not switches.index_photos:
        return Admission.SKIP
    await quotas.spend(services, message.where, UsageKind.PHOTOS, speak=spoken_to, switches=switches)
    return Admission.ANSWER if spoken_to else Admission.KEEP


async def look_if_admitted(services: Services, chat: Chat, message: PhotoMessage) -> PhotoFacts | None:
    """An album photo, admitted and looked at in the album's own task (the sender's queue waits for no
    database); None when the group keeps no photos nobody asked about."""
    if await admit(services, message) == Admission.SKIP:
        return None
    return await look(services, chat, message.photo)


async def on_photo(services: Services, message: PhotoMessage, chat: Chat) -> None:
    """Describe a photo, or answer the question in its caption; a group photo nobody asked about is kept
    quietly, unless the group turned that off."""
    where = message.where
    admission = await admit(services, message)
    if admission == Admission.SKIP:
        return
    if admission == Admission.KEEP:
        try:
            facts = await look(services, chat, message.photo)
        except BadImage as error:
            log.info("unaddressed group photo skipped: %s", error.detail)
            return
        await remember(services, where, [(message.photo, facts)], message.text, "", None)
        return
    language = await records.language(services, where)
    jpeg, epoch = None, services.pixels.epoch
    async with chat.working():
        if services.models.sees_images:  # its answer model sees the photo, now and in the follow-ups
            facts, jpeg = await pixels.look_keeping(services, chat, message.photo)
        else:
            facts = await look(services, chat, message.photo)
        if text.is_question(message.text):
            conversation, forgotten = await _conversation(services, where, facts)
            asked = AnswerRequest(conversation, message.text, forgotten, photo=jpeg)
            answer = await services.models.answer(asked)
            said = text.spoken(answer, language, noted=False)
            words = f"{said}\n\n({text.describe(facts, tags=3, language=language, reads=services.models.sees_images)})"
            if answer.route == RouteKind.DESCRIBE:  # "what is this?": the answer is the description, don't repeat it
                words = said
        else:
            words = text.describe(facts, language=language, reads=services.models.sees_images)
    # The caption is the models' own words; about a spoiler photo, they go behind a spoiler too
    response = text.noting_model_language(Said.about(words, message.photo.spoiler), language)
    sent = await chat.reply(response)
    [image_id] = await remember(services, where, [(message.photo, facts)], message.text, response.text, sent)
    pixels.keep(services, image_id, message.photo, where, jpeg, epoch)


async def on_album(
    services: Services,
    where: Where,
    words: str,
    addressed: bool,
    looked_at: Sequence[tuple[PhotoFile, PhotoFacts | BaseException | None]],
    chat: Chat,
) -> None:
    """One reply for an album, a line per photo; each photo's own failure gets its own line. Photos the
    group keeps no record of (None), and budget refusals already told today, get none."""
    results: list[tuple[PhotoFile, PhotoFacts | BaseException]] = [
        (photo, result)
        for photo, result in looked_at
        if result is not None and not (isinstance(result, quotas.OverBudget) and not result.user_message)
    ]
    if not results:
        return
    if not (addressed or (await _switches(services, where)).auto_caption):
        await remember(services, where, [(p, r) for p, r in results if isinstance(r, PhotoFacts)], words, "", None)
        return
    language = await records.language(services, where)
    _ = translator(language)
    response = Said(_.plural("{count} photo:", "{count} photos:", len(results), count=len(results)))
    good: list[tuple[PhotoFile, PhotoFacts]] = []
    for number, (photo, result) in enumerate(results, 1):
        response += f"\n{number}. "
        if isinstance(result, UserError):
            response += result.said_in(language)
        elif isinstance(result, BaseException):
            log.error("album photo %d failed", number, exc_info=result)
            response += _(ALBUM_PHOTO_FAILED)
        else:  # a spoiler photo's line goes behind its spoiler, the others' stay in sight
            response += Said.about(
                text.describe(result, tags=3, language=language, reads=services.models.sees_images), photo.spoiler
            )
            good.append((photo, result))
    about = -1  # the photo the conversation goes on about: the album's last, or the one its question picked
    if len(good) > 1 and len(good) == len(results) and text.is_question(words):  # "which one is red?" as its caption
        answer = await _across(services, where, [facts for _, facts in good], words)
        said = text.spoken(answer, language, noted=False)
        spoiler = any(photo.spoiler for photo, _ in good)
        response = Said.about(said, spoiler) + "\n\n" + response
        about = answer.details.get("photo", -1)
    if good:
        response = text.noting_model_language(response, language)
    sent = await chat.reply(response)
    await remember(services, where, good, words, response.text, sent, about)


async def _across(services: Services, where: Where, album: list[PhotoFacts], question: str) -> Answer:
    """The answer to a question asked in an album's caption, about all its photos (`dialogue.answer`)."""
    conversation, forgotten = await _conversation(services, where, album[-1])
    conversation = replace(conversation, album=tuple(album), position=len(album) - 1)
    return await services.models.answer(AnswerRequest(conversation, question, forgotten))


async def on_channel_post(services: Services, message: PhotoMessage, channel: Channel) -> None:
    """Add alt text to a channel's photo post when the channel turned that on."""
    switches = await _switches(services, message.where)
    if not switches.alt_text:
        return
    await quotas.spend(
        services, message.where, UsageKind.PHOTOS, speak=False, switches=switches
    )  # nobody to tell there
    facts = await look(services, channel, message.photo)
    language = await records.language(services, message.where)
    caption = text.alt_text(message.text, facts, language=language, spoiler=message.photo.spoiler)
    if caption is None:
        log.info(
            "channel %s post %s: caption already full, alt text skipped",
            message.where.chat_id,
            message.photo.message_id,
        )
    else:
        await channel.edit_caption(caption)
    await remember(
        services, message.where, [(message.photo, facts)], message.text, caption.text if caption else "", None
    )


async def remember(
    services: Services,
    where: Where,
    photos: Sequence[tuple[PhotoFile, PhotoFacts]],
    user_text: str,
    reply: str,
    reply_message_id: int | None,
    about: int = -1,
) -> list[int]:
    """Store the photos, what the user said and what the bot answered (about the photo at `about`, by default the
    last); returns the image ids."""

    async def work(session: AsyncSession) -> list[int]:
        ids = []
        for photo, facts in photos:
            record = await save_image(
                session,
                NewImage(
                    chat_id=where.chat_id,
                    sender_id=where.user_id,
                    message_id=photo.message_id,
                    file_id=photo.file_id,
                    file_unique_id=photo.file_unique_id,
                    facts=facts,
                    media_group_id=photo.media_group_id,
                    media_kind=photo.media_kind,
                    spoiler=photo.spoiler,
                    topic_id=where.topic,
                ),
                chat_kind=where.chat_kind,
            )
            ids.append(record.id)
        if where.user_id is not None and reply:  # a photo kept silently for /search is not a conversation
            await add_exchange(
                session, where, user_text or "[photo]", reply, ids[about] if ids else None, reply_message_id
            )
        return ids

    return await write_with_retry(services.sessions, work)


async def add_exchange(
    session: AsyncSession, where: Where, said: str, reply: str, image_id: int | None, reply_message_id: int | None
) -> None:
    """The user's turn and the bot's answer to it, in their conversation in this chat's topic."""
    user, topic = where.thread_user, where.topic
    await add_turn(session, where.chat_id, user, Role.USER, said, image_id, where.chat_kind, topic_id=topic)
    await add_turn(
        session,
        where.chat_id,
        user,
        Role.ASSISTANT,
        reply,
        image_id,
        where.chat_kind,
        message_id=reply_message_id,
        topic_id=topic,
    )


async def _conversation(services: Services, where: Where, facts: PhotoFacts) -> tuple[Conversation, int]:
    """The recent turns about this photo, and the count of /forgets (see `talk.thread`)."""
    async with services.reading() as session:
        turns = await recent_turns(session, where.chat_id, where.thread_user, CONTEXT_TURNS, where.topic)
        forgotten = await forget_count(session)
    return Conversation(image=facts, turns=tuple((turn.role, turn.text) for turn in turns)), forgotten


async def _switches(services: Services, where: Where) -> Switches:
    async with services.reading() as session:
        return await chat_switches(session, where.chat_id)
