"""Stand-ins for the core's unit tests: `Models` that give fixed answers, a `Chat` that keeps what the bot
said, and `Services` on an in-memory SQLite that storage migrates itself.

`FakeModels` replaces the model server only where the core's own rules are under test (who is answered,
what is counted, what is stored). It says nothing about the models: their tests load the trained world.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import numpy as np

from bot.core.incoming import PhotoFile, PhotoMessage, Where
from bot.core.services import Services, open_services
from bot.core.settings import BotSettings
from bot.core.text import Said
from bot.engine import (
    AnswerRequest,
    CheckRequest,
    ClassifyRequest,
    DescribeRequest,
    Draft,
    LabelScores,
    MoodRequest,
    TextRequest,
    TextVector,
)
from clipchat.facts import PhotoFacts, Tag
from dialogue import Answer
from storage import StorageSettings
from vision import ImageLimits

IDENTITY = "fake-clip"


def unit_vector(*values: float) -> np.ndarray:
    vector = np.array(values, dtype=np.float32)
    return vector / np.linalg.norm(vector)


PHOTO = PhotoFacts(
    caption="a small red circle on a grass background.",
    tags=(Tag("red", 0.9, "colour"), Tag("circle", 0.8, "shape"), Tag("grass background", 0.7, "background")),
    embedding=unit_vector(1, 0, 0, 0),
    model=IDENTITY,
)
ANSWER = Answer("It is red.", route="colour", confidence=0.9)
MOOD = Answer("It looks calm.", route="mood", confidence=0.6)


@dataclass
class FakeModels:
    """`bot.engine.Models` with fixed results: a photo is `photos[its bytes]`, else `facts`; every question
    gets `answer_given`.

    `calls` lists the features asked for, in order, so a test can tell whether any model ran, and
    `questions` what each question was asked about; `refuse_photos` makes `describe` raise it, as the
    models refuse a photo they cannot read. `drafts_given` is what `answer_stream` writes before the answer:
    (seconds it takes, the text so far) for each draft.
    """

    facts: PhotoFacts = PHOTO
    photos: dict[bytes, PhotoFacts] = field(default_factory=dict)
    answer_given: Answer = ANSWER
    mood_given: Answer = MOOD
    identity: str = IDENTITY
    limits: ImageLimits = field(default_factory=ImageLimits)
    sees_images: bool = False
    refuse_photos: BaseException | None = None
    drafts_given: tuple[tuple[float, str], ...] = ()
    calls: list[str] = field(default_factory=list)
    questions: list[AnswerRequest] = field(default_factory=list)
    closed: bool = False

    async def describe(self, request: DescribeRequest) -> PhotoFacts:
        self.calls.append("describe")
        if self.refuse_photos is not None:
            raise self.refuse_photos
        return self.photos.get(request.data, self.facts)

    async def embed_text(self, request: TextRequest) -> TextVector:
        self.calls.append("embed_text")
        return TextVector(self.facts.embedding)  # every phrase matches the photo

    async def classify(self, request: ClassifyRequest) -> LabelScores:
        self.calls.append("classify")
        share = 1 / len(request.labels)
        return LabelScores(tuple(Tag(label, share) for label in request.labels))

    async def answer(self, request: AnswerRequest) -> Answer:
        self.calls.append("answer")
        self.questions.append(request)
        return self.answer_given

    async def answer_stream(self, request: AnswerRequest) -> AsyncIterator[Draft | Answer]:
        for seconds, text in self.drafts_given:
            await asyncio.sleep(seconds)
            yield Draft(text)
        yield await self.answer(request)

    async def route(self, request: AnswerRequest) -> Answer:
        self.calls.append("route")
        return self.answer_given

    async def check(self, request: CheckRequest) -> Answer:
        self.calls.append("check")
        return self.answer_given

    async def mood(self, request: MoodRequest) -> Answer:
        self.calls.append("mood")
        return self.mood_given

    async def forget_caches(self) -> None:
        self.calls.append("forget_caches")

    def stalled_for(self) -> float:
        return 0.0

    def queue_depths(self) -> dict[str, int]:
        return {}

    async def close(self) -> None:
        self.closed = True


class FakeChat:
    """The core's `Chat` (and `Channel`) port in memory: a photo's bytes are its file id; replies are
    numbered message ids."""

    def __init__(self) -> None:
        self.replies: list[str] = []
        self.captions: list[str] = []
        self.hidden: list[tuple[str, ...]] = []  # per reply or caption, the words it put behind spoilers
        self.busy = 0  # times the chat was shown "typing…"
        self.drafts: list[str] = []  # what was shown as replies being written

    async def fetch(self, photo: PhotoFile) -> bytes:
        return photo.file_id.encode()

    @contextlib.asynccontextmanager
    async def working(self, action: str = "typing") -> AsyncIterator[None]:
        self.busy += 1
        yield

    async def reply(self, text: str | Said) -> int | None:
        said = text if isinstance(text, Said) else Said(text)
        self.replies.append(said.text)
        self.hidden.append(tuple(said.text[a:b] for a, b in said.hidden))
        return 1000 + len(self.replies)

    async def draft(self, text: Said) -> bool:
        self.drafts.append(text.text)
        return True

    async def edit_caption(self, caption: Said) -> None:
        self.captions.append(caption.text)
        self.hidden.append(tuple(caption.text[a:b] for a, b in caption.hidden))


@contextlib.asynccontextmanager
async def fake_services(
    settings: BotSettings | None = None, models: FakeModels | None = None
) -> AsyncIterator[Services]:
    """`Services` as the composition root opens them, on `models` and a migrated in-memory SQLite."""
    models = models or FakeModels()

    async def open_models() -> FakeModels:
        return models

    services = await open_services(
        settings or BotSettings(_env_file=None),
        StorageSettings(database_url="sqlite+aiosqlite://"),
        open_models,
    )
    try:
        yield services
    finally:
        await services.close()


PRIVATE = Where(chat_id=10, chat_kind="private", user_id=10)
GROUP_ID = -100


def in_group(user_id: int) -> Where:
    return Where(chat_id=GROUP_ID, chat_kind="supergroup", user_id=user_id)


def photo_message(where: Where, text: str = "", *, addressed: bool | None = None, message_id: int = 1) -> PhotoMessage:
    """A photo as the adapter hands it to the core; private photos are always addressed."""
    photo = PhotoFile(message_id=message_id, file_id=f"file-{message_id}", file_unique_id=f"unique-{message_id}")
    spoken_to = where.chat_kind == "private" if addressed is None else addressed
    return PhotoMessage(where, photo, text, spoken_to)
