"""Follow-up questions about a photo, grounded by CLIP so answers do not contradict the picture.

    from dialogue import answer, Conversation
    reply = answer(models, Conversation(image=photo_facts, turns=recent), "what colour is the car?")

This package never imports `telegram`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from clipchat.facts import PhotoFacts
from clipchat.i18n import N_, say

from .conversation import Answer, AnswerOptions, Conversation, DialogueModels
from .describe import answer_describe
from .elsewhere import OpenQuestion, checked, open_question, unavailable
from .generation import Drafts, answer_open, build_prompt, clean, contradiction
from .grounded import answer_colour, answer_count, answer_identify, answer_presence
from .intents import route_question
from .mood import answer_mood, photo_mood, text_sentiment
from .routing import Route, RouteKind
from .seeing import answer_seeing, read_text

MAX_QUESTION_CHARS = 2000
NEEDS_PHOTO = N_(
    "I don't have a photo to talk about yet. Send me one (or reply to a photo with your question) "
    "and ask me anything about it."
)
SEE_AGAIN = N_(
    "My eyes have been upgraded since you sent that photo, so I need to see it again. Could you send it once more?"
)

# A route's answer from what CLIP sees, or None: the language model answers instead (answer_open).
RouteHandler = Callable[[DialogueModels, Route, PhotoFacts, torch.Tensor], Answer | None]
ROUTES: dict[RouteKind, RouteHandler] = {
    # "what is this?": the caption and tags already say it
    RouteKind.DESCRIBE: lambda models, route, facts, image: answer_describe(facts),
    RouteKind.COLOUR: lambda models, route, facts, image: answer_colour(models, image, route.subject),
    RouteKind.PRESENCE: lambda models, route, facts, image: (
        answer_presence(models, image, route.subject) if route.subject else None
    ),
    RouteKind.IDENTIFY: lambda models, route, facts, image: (
        answer_identify(models, image, route.subject) if route.subject else None
    ),
    RouteKind.COUNT: lambda models, route, facts, image: (
        answer_count(models, image, route.subject) if route.subject else None
    ),
    RouteKind.MOOD: lambda models, route, facts, image: answer_mood(models.encoder, image),
    RouteKind.READ: lambda models, route, facts, image: None,  # the answer model reads it (`read_text`)
    RouteKind.OPEN: lambda models, route, facts, image: None,
}


def answer(
    models: DialogueModels,
    conversation: Conversation,
    question: str,
    options: AnswerOptions = AnswerOptions(),
    drafts: Drafts | None = None,
    picture: Any | None = None,
) -> Answer:
    """Answer `question` about the conversation's photo, by looking where CLIP can, else with the answer model.
    Only the answer model's answers are written gradually: with `drafts`, its text so far goes there meanwhile.
    `picture`: the photo itself (a PIL image), for an answer model that sees images; it answers from the words
    without it."""
    looked = _looked(models, conversation, question)
    if isinstance(looked, Answer):
        return looked
    question, image, kind = looked
    if kind is RouteKind.READ:
        return read_text(models, conversation, picture, options, drafts)
    if models.answerer.sees_images:
        return answer_seeing(models, conversation, question, image, picture, options, drafts)
    return answer_open(models, conversation, question, image, options, drafts)


def route(models: DialogueModels, conversation: Conversation, question: str) -> Answer | OpenQuestion:
    """`answer` up to the answer model: CLIP's answer where its routes have one, else the open question as chat
    messages, for an answer model elsewhere (a model server) to write; `elsewhere.checked` judges what it wrote."""
    looked = _looked(models, conversation, question)
    return looked if isinstance(looked, Answer) else open_question(conversation, looked[0])


def _looked(
    models: DialogueModels, conversation: Conversation, question: str
) -> Answer | tuple[str, torch.Tensor, RouteKind]:
    """The answer from the photo's facts or CLIP's routes, or the tidied question, the photo's vector and the
    route's kind (OPEN or READ) for an answer model."""
    question = " ".join(question.split())[:MAX_QUESTION_CHARS]
    if conversation.image is None:
        return Answer(NEEDS_PHOTO, "needs_photo", said=say(NEEDS_PHOTO))
    if conversation.image.model and conversation.image.model != models.encoder.identity:
        return Answer(SEE_AGAIN, "needs_photo", said=say(SEE_AGAIN))
    image = torch.as_tensor(conversation.image.embedding, dtype=torch.float32, device=models.encoder.device)
    route = route_question(question, models.encoder)
    looked = ROUTES[route.kind](models, route, conversation.image, image)
    return looked if looked is not None else (question, image, route.kind)


__all__ = [
    "ROUTES",
    "Answer",
    "AnswerOptions",
    "Conversation",
    "DialogueModels",
    "Drafts",
    "OpenQuestion",
    "Route",
    "RouteKind",
    "answer",
    "answer_colour",
    "answer_count",
    "answer_describe",
    "answer_identify",
    "answer_mood",
    "answer_open",
    "answer_presence",
    "answer_seeing",
    "build_prompt",
    "checked",
    "clean",
    "contradiction",
    "open_question",
    "photo_mood",
    "read_text",
    "route",
    "route_question",
    "text_sentiment",
    "unavailable",
]
