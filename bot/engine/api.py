"""The model engine's public interface: what the bot may ask of the models, as typed requests and results.

Every feature is one request type, one result type and one method of `Models`.
`LocalModels` answers in this process; `RayModels` sends the same requests to a
Ray Serve application. Both wrap the same `ModelFeatures`, so a feature is written
once, in `features.py`, plus one line in each transport.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from clipchat.facts import PhotoFacts, Tag
from dialogue import Answer, Conversation, OpenQuestion
from vision import ImageLimits


@dataclass(frozen=True)
class DescribeRequest:
    data: bytes  # the file as sent: decoded (and refused, if it must be) beside the model thread


@dataclass(frozen=True)
class TextRequest:
    text: str  # a search phrase
    forgotten: int = 0  # the count of /forgets the database held when asked (see `Models`)


@dataclass(frozen=True)
class TextVector:
    vector: np.ndarray  # (D,) float32, L2-normalised CLIP text vector


@dataclass(frozen=True)
class ClassifyRequest:
    embedding: np.ndarray  # (D,) the photo's CLIP vector
    labels: tuple[str, ...]  # at least two
    forgotten: int = 0  # the count of /forgets the database held when asked (see `Models`)


@dataclass(frozen=True)
class LabelScores:
    tags: tuple[Tag, ...]  # every label asked about, best first


@dataclass(frozen=True)
class AnswerRequest:
    conversation: Conversation
    question: str
    forgotten: int = 0  # the count of /forgets the database held when asked (see `Models`)
    # The photo's file, for an answer model that sees images (`Models.sees_images`); None for one that does not.
    # A follow-up's photo is downloaded again by its Telegram file id (`core/pixels`): photos' bytes are not kept.
    photo: bytes | None = None


@dataclass(frozen=True)
class CheckRequest:
    """Replies a model elsewhere wrote to an open question (`Models.route`), for CLIP to judge."""

    facts: PhotoFacts  # the photo they are about
    replies: tuple[str, ...]


@dataclass(frozen=True)
class Draft:
    """An answer being written: its text so far. A stream of these ends with the checked `Answer`, whose
    text may differ (the check refused what the drafts said, or another sampled answer won)."""

    text: str


@dataclass(frozen=True)
class MoodRequest:
    embedding: np.ndarray  # (D,) the photo's CLIP vector


# The features, by method name: what a transport may be asked to run.
FEATURES = ("describe", "embed_text", "classify", "answer", "route", "check", "mood")


class Models(Protocol):
    """The models as the application sees them; every call may raise a `clipchat.errors.UserError`.

    The models cache what people typed (search phrases, /tags labels), and a cache entry cannot say
    whose words it holds, so /forget empties them all. It can only call `forget_caches` in its own
    process (on Ray Serve, one replica); the requests a cache could answer carry the count of /forgets
    the database records (`forgotten`), and every process or replica empties its caches before it
    answers one whose count differs from the count they were filled under."""

    identity: str  # which CLIP made the vectors: stored beside them
    limits: ImageLimits  # what the bot refuses before downloading
    sees_images: bool  # whether `answer` reads `AnswerRequest.photo` (a VLM in process or served): else no photo

    async def describe(self, request: DescribeRequest) -> PhotoFacts: ...
    async def embed_text(self, request: TextRequest) -> TextVector: ...
    async def classify(self, request: ClassifyRequest) -> LabelScores: ...
    async def answer(self, request: AnswerRequest) -> Answer: ...
    def answer_stream(self, request: AnswerRequest) -> AsyncIterator[Draft | Answer]: ...  # drafts, then the answer
    # `answer` in two halves, for an answer model elsewhere (engine/served): CLIP's answer, or the open question;
    # then the replies written to it, judged
    async def route(self, request: AnswerRequest) -> Answer | OpenQuestion: ...
    async def check(self, request: CheckRequest) -> Answer: ...
    async def mood(self, request: MoodRequest) -> Answer: ...
    async def forget_caches(self) -> None: ...
    def stalled_for(self) -> float: ...  # seconds the models have been stuck on one batch (0: idle or moving)
    def queue_depths(self) -> dict[str, int]: ...
    async def close(self) -> None: ...
