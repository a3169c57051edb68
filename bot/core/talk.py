"""Talking about photos already seen: questions, /caption, /tags, /mood and /search."""

from __future__ import annotations

from dataclasses import dataclass

from dialogue import Answer, Conversation
from storage import ImageRecord, image_under_discussion, recent_turns, search_images, write_with_retry
from vision.tagger import parse_label_list

from ..engine import AnswerRequest, ClassifyRequest, MoodRequest, TextRequest
from . import text
from .incoming import Chat, Where
from .photos import CONTEXT_TURNS, add_exchange
from .services import Services

NO_PHOTO = "I don't have a photo here yet. Send one, or reply to a photo with the command."
NOTHING_TO_TAG = "Nothing stands out clearly enough to tag."
NO_PHOTOS_TO_SEARCH = "I haven't seen any photos in this chat yet (or they were deleted)."
MAX_SEARCH_CHARS = 300


@dataclass(frozen=True)
class Found:
    """A photo /search sends back: by its Telegram file id, with the method that file id belongs to."""

    file_id: str
    media_kind: str  # photo or document
    caption: str


async def thread(services: Services, where: Where, reply_to: int | None = None) -> tuple[ImageRecord | None,
                                                                                        Conversation]:
    """The photo under discussion and the recent turns of this user in this chat."""
    async with services.sessions() as session:
        image = await image_under_discussion(session, where.chat_id, where.user_id, reply_to)
        turns = await recent_turns(session, where.chat_id, where.user_id, limit=CONTEXT_TURNS)
    return image, Conversation(image=image.facts() if image else None,
                               turns=tuple((turn.role, turn.text) for turn in turns))


async def on_question(services: Services, where: Where, question: str, reply_to: int | None, chat: Chat) -> None:
    """Answer a follow-up about the photo under discussion, and remember the exchange."""
    most = services.settings.max_question_chars
    question, cut = question[:most], len(question) > most  # the model reads a bounded prompt anyway
    async with chat.working():
        image, conversation = await thread(services, where, reply_to)
        answer = await services.models.answer(AnswerRequest(conversation, question))
    note = f"\n\n(I read only the first {most} characters of your message.)" if cut else ""
    sent = await chat.reply(answer.text + note)
    await write_with_retry(services.sessions, lambda session: add_exchange(
        session, where, question, answer.text, image.id if image else None, sent))


async def caption(services: Services, where: Where, reply_to: int | None) -> str:
    image, conversation = await thread(services, where, reply_to)
    return text.describe(conversation.image) if image else NO_PHOTO


async def tags(services: Services, where: Where, labels_text: str, reply_to: int | None) -> str:
    """The photo's stored tags, or with labels given, how well each label fits it."""
    image, conversation = await thread(services, where, reply_to)
    if image is None:
        return NO_PHOTO
    found = conversation.image.tags
    if labels_text.strip():
        labels = parse_label_list(labels_text)
        refusal = _label_refusal(labels, services.settings.max_labels, services.settings.max_label_chars)
        if refusal:
            return refusal
        found = (await services.models.classify(ClassifyRequest(conversation.image.embedding, tuple(labels)))).tags
    return "\n".join(f"{tag.label}: {tag.score:.0%}" for tag in found[:10]) or NOTHING_TO_TAG


def _label_refusal(labels: list[str], most: int, longest: int) -> str | None:
    """Why these labels are too much work to weigh, or None. Checked before any model runs."""
    if len(labels) > most:
        return (f"I can weigh up to {most} labels at once, and you gave {len(labels)}. "
                "Please pick the ones you care about most.")
    if any(len(label) > longest for label in labels):
        return f"Each label can be at most {longest} characters long. Short names work best, like: /tags cat, dog, fox"
    return None


async def mood(services: Services, where: Where, reply_to: int | None) -> str:
    image, conversation = await thread(services, where, reply_to)
    if image is None:
        return NO_PHOTO
    answer: Answer = await services.models.mood(MoodRequest(conversation.image.embedding))
    return answer.text


async def search(services: Services, chat_id: int, phrase: str) -> list[Found]:
    """This chat's photos that best match `phrase`: the best one, plus any nearly as good."""
    vector = await services.models.embed_text(TextRequest(phrase[:MAX_SEARCH_CHARS]))
    async with services.sessions() as session:
        hits = await search_images(session, services.index, chat_id, services.models.identity, vector.vector,
                                   k=services.settings.search_results)
    if not hits:
        return []
    best = hits[0][1]
    return [Found(record.file_id, record.media_kind, f"{record.caption} (match {score:.2f})"[:text.CAPTION_LIMIT])
            for record, score in hits if score >= best - 0.02]
