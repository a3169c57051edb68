"""Follow-up questions about a photo, grounded by CLIP so answers do not contradict the picture.

    from dialogue import answer, Conversation
    reply = answer(models, Conversation(image=photo_facts, turns=recent), "what colour is the car?")

This package never imports `telegram`.
"""

from __future__ import annotations

import torch

from clipchat.i18n import N_, say

from .conversation import Answer, AnswerOptions, Conversation
from .describe import answer_describe
from .generation import answer_open, build_prompt, clean, contradiction
from .grounded import answer_colour, answer_count, answer_identify, answer_presence
from .mood import answer_mood, photo_mood, text_sentiment
from .routing import Route, route_question

MAX_QUESTION_CHARS = 2000
NEEDS_PHOTO = N_(
    "I don't have a photo to talk about yet. Send me one (or reply to a photo with your question) "
    "and ask me anything about it."
)
SEE_AGAIN = N_(
    "My eyes have been upgraded since you sent that photo, so I need to see it again. Could you send it once more?"
)


def answer(models, conversation: Conversation, question: str, options: AnswerOptions = AnswerOptions()) -> Answer:
    """Answer `question` about the conversation's photo, by looking where CLIP can, else with GPT-2."""
    question = " ".join(question.split())[:MAX_QUESTION_CHARS]
    if conversation.image is None:
        return Answer(NEEDS_PHOTO, "needs_photo", said=say(NEEDS_PHOTO))
    if conversation.image.model and conversation.image.model != models.encoder.identity:
        return Answer(SEE_AGAIN, "needs_photo", said=say(SEE_AGAIN))
    image = torch.as_tensor(conversation.image.embedding, dtype=torch.float32, device=models.encoder.device)
    route = route_question(question)
    if route.kind == "describe":  # "what is this?": the caption and tags already say it
        return answer_describe(conversation.image)
    if route.kind == "colour":
        return answer_colour(models, image, route.subject)
    if route.kind == "presence" and route.subject:
        return answer_presence(models, image, route.subject)
    if route.kind == "identify":
        identified = answer_identify(models, image, route.subject)
        if identified is not None:
            return identified
    if route.kind == "count" and route.subject:
        return answer_count(models, image, route.subject)
    if route.kind == "mood":
        return answer_mood(models.encoder, image)
    return answer_open(models, conversation, question, image, options)


__all__ = [
    "Answer",
    "AnswerOptions",
    "Conversation",
    "Route",
    "answer",
    "answer_colour",
    "answer_count",
    "answer_describe",
    "answer_identify",
    "answer_mood",
    "answer_open",
    "answer_presence",
    "build_prompt",
    "clean",
    "contradiction",
    "photo_mood",
    "route_question",
    "text_sentiment",
]
