"""What an answer is built from: the photo under discussion and the recent turns."""

from __future__ import annotations

from dataclasses import dataclass, field

from clipchat.facts import PhotoFacts
from clipchat.i18n import Said


@dataclass(frozen=True)
class Conversation:
    image: PhotoFacts | None
    turns: tuple[tuple[str, str], ...] = ()  # (role, text), oldest first; role is "user" or "assistant"


@dataclass(frozen=True)
class Answer:
    text: str
    route: str  # which path answered: colour, presence, identify, count, mood, describe, open, needs_photo
    confidence: float = 1.0
    details: dict = field(default_factory=dict)
    said: Said | None = None  # the answer as a phrase the core says in the reader's language; None: `text` as is

    @property
    def quotes_models(self) -> bool:
        """The answer holds the models' own words (a caption, labels, generated text), which stay in their
        language whatever the reader's."""
        return self.route in ("describe", "open", "presence", "identify")


@dataclass(frozen=True)
class AnswerOptions:
    max_tokens: int = 40  # one or two sentences
    candidates: int = 4  # answers sampled, then reranked
    context_window: int | None = None  # a cap on the answer model's own window (from its config); None: no cap
    contradiction_margin: float = 0.05  # an answer this much further from the photo than its caption is refused
