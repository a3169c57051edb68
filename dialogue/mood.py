"""The mood of a photo, and of the user's words: CLIP zero-shot over a few moods and sentiments.

This is the seed's multimodal sentiment analysis: both sides are compared in
CLIP's shared space, so "what a lovely day" and a sunny beach land near each other.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from clipchat.i18n import Said, english, say, word
from vision.models.encoder import ClipEncoder
from vision.models.tagger import zero_shot_weights

from .conversation import Answer
from .routing import RouteKind

MOODS = ("happy", "sad", "calm", "exciting", "scary", "romantic", "funny", "gloomy", "peaceful", "cozy")
SENTIMENTS = ("positive", "negative", "neutral")
_PHOTO_TEMPLATES = ("a {} photo.", "a photo that feels {}.", "the mood of this picture is {}.")
_TEXT_TEMPLATES = ("a {} message.", "someone saying something {}.")
# The moods and sentiments as the catalogs translate them (CLIP itself reads the English words above).
MOOD_NAMES = {
    name.msgid: name
    for name in (
        word("mood", "happy"),
        word("mood", "sad"),
        word("mood", "calm"),
        word("mood", "exciting"),
        word("mood", "scary"),
        word("mood", "romantic"),
        word("mood", "funny"),
        word("mood", "gloomy"),
        word("mood", "peaceful"),
        word("mood", "cozy"),
    )
}
SENTIMENT_NAMES = {
    name.msgid: name
    for name in (word("sentiment", "positive"), word("sentiment", "negative"), word("sentiment", "neutral"))
}


@dataclass(frozen=True)
class Mood:
    label: str
    scores: dict[str, float]


def photo_mood(encoder: ClipEncoder, image: torch.Tensor) -> Mood:
    probs = (encoder.logit_scale * zero_shot_weights(encoder, MOODS, _PHOTO_TEMPLATES) @ image.float()).softmax(-1)
    scores = dict(zip(MOODS, probs.tolist()))
    return Mood(max(scores, key=scores.__getitem__), scores)


def text_sentiment(encoder: ClipEncoder, text: str) -> Mood:
    vector = encoder.embed_texts([text])[0]
    probs = (encoder.logit_scale * zero_shot_weights(encoder, SENTIMENTS, _TEXT_TEMPLATES) @ vector).softmax(-1)
    scores = dict(zip(SENTIMENTS, probs.tolist()))
    return Mood(max(scores, key=scores.__getitem__), scores)


def answer_mood(encoder: ClipEncoder, image: torch.Tensor, user_text: str | None = None) -> Answer:
    mood = photo_mood(encoder, image)
    said: Said = say("The photo feels {mood}.", mood=MOOD_NAMES[mood.label])
    details = {"photo": mood.scores}
    if user_text:
        sentiment = text_sentiment(encoder, user_text)
        details["text"] = sentiment.scores
        said = (said, " ", say("Your message reads as {sentiment}.", sentiment=SENTIMENT_NAMES[sentiment.label]))
    return Answer(english(said), RouteKind.MOOD, mood.scores[mood.label], details, said)
