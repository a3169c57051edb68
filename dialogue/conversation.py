"""What an answer is built from: the photo under discussion, the recent turns, and the models that look."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from clipchat.facts import PhotoFacts
from clipchat.i18n import Said
from clipchat.kinds import Role
from vision.models.answer_model import LazyAnswerModel
from vision.models.encoder import ClipEncoder
from vision.models.tagger import ZeroShotTagger

from .routing import RouteKind


class DialogueModels(Protocol):
    """What the dialogue looks with: `vision.VisionModels` is one."""

    @property
    def encoder(self) -> ClipEncoder: ...
    @property
    def tagger(self) -> ZeroShotTagger: ...
    @property
    def answerer(self) -> LazyAnswerModel: ...


@dataclass(frozen=True)
class Conversation:
    image: PhotoFacts | None
    turns: tuple[tuple[Role, str], ...] = ()  # (role, text), oldest first
    album: tuple[PhotoFacts, ...] = ()  # the album `image` is one of, in order; () for a photo sent alone
    position: int | None = None  # where `image` is in `album`


@dataclass(frozen=True)
class Answer:
    text: str
    route: RouteKind | Literal["needs_photo"]  # which path answered; needs_photo: none could, without the photo
    confidence: float = 1.0
    details: dict[str, Any] = field(default_factory=dict)
    said: Said | None = None  # the answer as a phrase the core says in the reader's language; None: `text` as is

    @property
    def quotes_models(self) -> bool:
        """The answer holds the models' own words (a caption, labels, generated text), which stay in their
        language whatever the reader's."""
        return bool(self.details.get("quotes_models")) or self.route in (
            RouteKind.DESCRIBE,
            RouteKind.OPEN,
            RouteKind.PRESENCE,
            RouteKind.IDENTIFY,
        )


@dataclass(frozen=True)
class AnswerOptions:
    max_tokens: int = 40  # one or two sentences
    candidates: int = 4  # answers sampled, then reranked
    context_window: int | None = None  # a cap on the answer model's own window (from its config); None: no cap
    contradiction_margin: float = 0.05  # an answer this much further from the photo than its caption is refused
