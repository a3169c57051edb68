"""What an answer is built from: the photo under discussion and the recent turns."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class ImageFacts:
    caption: str
    tags: tuple[str, ...]
    embedding: np.ndarray  # (D,) normalised CLIP vector of the photo
    embedding_model: str = ""


@dataclass(frozen=True)
class Conversation:
    image: ImageFacts | None
    turns: tuple[tuple[str, str], ...] = ()  # (role, text), oldest first; role is "user" or "assistant"


@dataclass(frozen=True)
class Answer:
    text: str
    route: str  # which path answered: colour, presence, identify, count, mood, open, needs_photo
    confidence: float = 1.0
    details: dict = field(default_factory=dict)


@dataclass(frozen=True)
class AnswerOptions:
    max_tokens: int = 40  # one or two sentences
    candidates: int = 4  # GPT-2 answers sampled, then reranked
    context_window: int = 1024  # GPT-2's; the prompt and the answer must fit
    contradiction_margin: float = 0.05  # an answer this much further from the photo than its caption is refused


def from_storage(image, turns) -> Conversation:
    """Build a Conversation from storage rows (an ImageRecord or None, and Turn rows)."""
    from storage import decode_embeddings

    facts = None
    if image is not None:
        facts = ImageFacts(caption=image.caption, tags=tuple(t["label"] for t in image.tags),
                           embedding=decode_embeddings([image.embedding])[0], embedding_model=image.embedding_model)
    return Conversation(image=facts, turns=tuple((t.role, t.text) for t in turns))
