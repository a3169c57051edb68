"""Open questions answered by a model elsewhere: a model server behind an OpenAI-compatible API.

The model thread routes a question first (`dialogue.route`): CLIP's exact routes answer it as they always do,
and an open question leaves as the chat messages the in-process answer model's template would render (the
system message with the caption, the tags and what CLIP is confident about, the recent turns, the question).
What the server writes comes back to the model thread for the check every answer gets (`checked`): cleaned
to its first sentence, refused where CLIP finds it contradicts the photo, reranked. When the server cannot
answer, `unavailable` says so in one line and answers from what was seen when the photo arrived.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from clipchat.facts import PhotoFacts
from clipchat.i18n import N_, english, say
from vision.models.language_model import Caption

from .conversation import Answer, AnswerOptions, Conversation, DialogueModels
from .describe import described
from .generation import LOOP, clean, judged
from .prompts import chat_messages, photo_of
from .routing import RouteKind

SERVER_DOWN = N_("The model server that writes my answers is unavailable right now, so here is what I can see:")


@dataclass(frozen=True)
class OpenQuestion:
    """An open question, for an answer model elsewhere to write; `checked` judges what it wrote."""

    messages: tuple[dict[str, str], ...]  # OpenAI chat messages: {"role": ..., "content": ...}
    max_tokens: int  # as long an answer as the in-process answer model may write
    facts: PhotoFacts  # the photo asked about: what the replies are checked against


def open_question(conversation: Conversation, question: str, options: AnswerOptions = AnswerOptions()) -> OpenQuestion:
    return OpenQuestion(tuple(chat_messages(conversation, question)), options.max_tokens, photo_of(conversation))


def checked(models: DialogueModels, facts: PhotoFacts, replies: Sequence[str]) -> Answer:
    """The best of the replies a model elsewhere wrote that CLIP finds no contradiction in, or the same
    "I'm not sure ... What I can see is" as the in-process answer model's. A server reports no likelihoods:
    CLIP alone reranks, and the replies that are no sentence (empty, one word looping) are dropped first."""
    image = torch.as_tensor(facts.embedding, dtype=torch.float32, device=models.encoder.device)
    candidates = [Caption(text, (), 0.0) for reply in replies if (text := clean(reply)) and not LOOP.search(text)]
    return judged(models, image, facts, candidates, sampled=len(replies))


def unavailable(facts: PhotoFacts) -> Answer:
    """The answer when the model server cannot write one: one line saying so, then the photo's caption and tags."""
    said = (say(SERVER_DOWN), "\n", described(facts))
    return Answer(english(said), RouteKind.DESCRIBE, 0.0, {"served": "unavailable"}, said)


__all__ = ["SERVER_DOWN", "OpenQuestion", "checked", "open_question", "unavailable"]
