"""Follow-up questions about a photo, grounded by CLIP so answers do not contradict the picture.

    from dialogue import answer, Conversation
    reply = answer(models, Conversation(image=photo_facts, turns=recent), "what colour is the car?")

This package never imports `telegram`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import torch

from clipchat.facts import PhotoFacts
from clipchat.i18n import N_, english, say
from vision.models.vlm import AnswerKind

from .across import ORDINAL_NAMES, answer_across
from .album import asked, picked
from .conversation import Answer, AnswerOptions, Conversation, DialogueModels
from .describe import answer_describe
from .elsewhere import OpenQuestion, checked, open_question, unavailable
from .generation import Drafts, answer_open, build_prompt, clean, contradiction
from .grounded import answer_colour, answer_count, answer_identify, answer_presence
from .intents import route_question
from .mood import answer_mood, photo_mood, text_sentiment
from .routing import Route, RouteKind
from .seeing import answer_seeing, read_text, seen_better

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
    # CLIP's answers, which say so where they differ from the caption the user has (`agreement`)
    RouteKind.COLOUR: lambda models, route, facts, image: answer_colour(models, image, route.subject, facts.caption),
    RouteKind.PRESENCE: lambda models, route, facts, image: (
        answer_presence(models, image, route.subject, facts.caption) if route.subject else None
    ),
    RouteKind.IDENTIFY: lambda models, route, facts, image: (
        answer_identify(models, image, route.subject, facts.caption) if route.subject else None
    ),
    RouteKind.COUNT: lambda models, route, facts, image: (
        answer_count(models, image, route.subject, facts.caption) if route.subject else None
    ),
    RouteKind.MOOD: lambda models, route, facts, image: answer_mood(models.encoder, image),
    RouteKind.READ: lambda models, route, facts, image: None,  # the answer model reads it (`read_text`)
    RouteKind.OPEN: lambda models, route, facts, image: None,
    RouteKind.ALBUM: lambda models, route, facts, image: None,  # asked across an album before routing (`_in_album`)
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
    sees = picture is not None and models.answerer.sees_images
    # Florence-2 answers only its tasks (reading, describing); a chat VLM answers anything about the photo
    chats = sees and models.answerer.kind is not AnswerKind.TASKS
    looked = _looked(models, conversation, question, sees, chats)
    if isinstance(looked, Answer):
        return looked
    conversation, question, image, kind = looked
    # The photo fetched is the one under discussion; a question about another of its album, named by position, is
    # answered from that photo's words rather than with the wrong pixels.
    seen = picture if conversation.position is None else None
    if kind is RouteKind.READ:
        return named(read_text(models, conversation, seen, options, drafts), conversation)
    if models.answerer.sees_images:
        return named(answer_seeing(models, conversation, question, image, seen, options, drafts), conversation)
    return named(answer_open(models, conversation, question, image, options, drafts), conversation)


def route(
    models: DialogueModels, conversation: Conversation, question: str, sees_images: bool = False
) -> Answer | OpenQuestion:
    """`answer` up to the answer model: CLIP's answer where its routes have one, else the open question as chat
    messages, for an answer model elsewhere (a model server) to write; `elsewhere.checked` judges what it wrote.
    `sees_images`: that model gets the photo, so the questions it answers better than CLIP go to it (a model
    server chats, whatever the local answer model is)."""
    looked = _looked(models, conversation, question, sees_images, chats=True)
    return looked if isinstance(looked, Answer) else open_question(looked[0], looked[1])


def _looked(
    models: DialogueModels, conversation: Conversation, question: str, sees: bool, chats: bool
) -> Answer | tuple[Conversation, str, torch.Tensor, RouteKind]:
    """The answer from the photo's facts or CLIP's routes, or, for an answer model, the conversation about the
    photo asked about (an album's photo named by position), the tidied question, the photo's vector and the
    route's kind (OPEN or READ). `sees`: the answer model will have the photo; `chats`: it answers any question
    about it, not only a task's (`seeing.seen_better`)."""
    question = " ".join(question.split())[:MAX_QUESTION_CHARS]
    if conversation.image is None:
        return Answer(NEEDS_PHOTO, "needs_photo", said=say(NEEDS_PHOTO))
    if any(f.model and f.model != models.encoder.identity for f in (conversation.image, *conversation.album)):
        return Answer(SEE_AGAIN, "needs_photo", said=say(SEE_AGAIN))
    if len(conversation.album) > 1:  # "which one is red?", "the second one": across the album, or one of it
        looked = _in_album(models, conversation, question)
        if isinstance(looked, Answer):
            return looked
        conversation, question = looked
    facts = conversation.image
    assert facts is not None
    image = torch.as_tensor(facts.embedding, dtype=torch.float32, device=models.encoder.device)
    route = route_question(question, models.encoder) if question else Route(RouteKind.DESCRIBE)
    # only for the photo fetched: an album photo named by position goes to the answer model without its pixels
    if sees and conversation.position is None and seen_better(route, chats):
        return conversation, question, image, RouteKind.OPEN
    grounded = ROUTES[route.kind](models, route, facts, image)
    return named(grounded, conversation) if grounded is not None else (conversation, question, image, route.kind)


def _in_album(models: DialogueModels, conversation: Conversation, question: str) -> Answer | tuple[Conversation, str]:
    """An album question's answer, or the conversation about the photo it names (and what it asks of it)."""
    total = len(conversation.album)
    pick = picked(question, total)
    if pick is None:
        ask = asked(question)
        answered = answer_across(models, conversation.album, ask) if ask else None
        return answered if answered is not None else (conversation, question)
    if pick.position >= total:
        said = say("There are only {total} photos in the album.", total=total)
        return Answer(english(said), RouteKind.ALBUM, 1.0, {"photos": list(range(total))}, said)
    return replace(conversation, image=conversation.album[pick.position], position=pick.position), pick.rest


def named(answer: Answer, conversation: Conversation) -> Answer:
    """An answer about one photo of an album, which says which one ("The second photo: ...") and keeps it under
    discussion."""
    if conversation.position is None or len(conversation.album) < 2:
        return answer
    said = (say("The {ordinal} photo:", ordinal=ORDINAL_NAMES[conversation.position]), " ", answer.said or answer.text)
    return replace(answer, text=english(said), said=said, details={**answer.details, "photo": conversation.position})


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
