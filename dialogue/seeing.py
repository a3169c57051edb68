"""Open questions answered by a model that sees the photo (`vision.models.vlm`), CLIP still judging the answers.

A chat vision-language model (SmolVLM, Qwen2.5-VL ...) gets its own chat template's prompt: a system message
with the facts the bot already gave (the caption, CLIP's tags and those it is confident about), the recent
turns, and the question with the photo as an image part. It samples as the language model does
(`generation.sample_from`: the same stops, temperature, nucleus and answer-only repetition rules, the first
candidate streamed to the drafts), fewer candidates since each one costs a pass over the photo's tokens, and
`generation.judged` refuses what CLIP finds absent from the photo, as for every other answer model.

Without the photo (it could not be fetched in time) the same model answers from the words alone. A task-prompted
model (Florence-2) cannot chat: it reads the photo's text for a question that asks for it (<OCR>), describes the
photo at length for one that asks for that, and leaves the other open questions to the captioner's language model.

A request to read the photo's text (the READ route, `/read`) is `read_text`: Florence-2's OCR task, or a chat VLM
given a fixed instruction to transcribe, greedily; an answer model that reads only words says which sets can read.
"""

from __future__ import annotations

import re
from typing import Any

import torch

from clipchat.i18n import N_, english, say
from vision.models.answer_model import AnswerModel
from vision.models.language_model import Caption
from vision.models.vlm import DESCRIBE_TASK, READ_TASK, AnswerKind, photo_inputs, run_task

from .conversation import Answer, AnswerOptions, Conversation, DialogueModels
from .describe import answer_describe
from .generation import MIN_ANSWER_TOKENS, Drafts, answer_open, clean, judged, sample_from
from .prompts import MAX_QUESTION_TOKENS, alternating, decoded, facts_text, photo_of
from .routing import Route, RouteKind

SEEING_INSTRUCTION = (
    "You answer questions about the photo you see. The user was already told its caption; the tags are what "
    "CLIP, which checks your answer against the photo, found in it. Answer in one short sentence."
)
SEEN_CANDIDATES = 2  # each candidate's pass covers the photo's hundreds of tokens: two give CLIP a choice
TASK_TOKENS = 128  # a transcription or a paragraph, greedy, whole
# "what does it say?", "read the text", "what is written": the photo's text; not "can you say what shape it is?"
READS = re.compile(
    r"\b(?:read|reads|written|writing|text|words?|letters|transcribe)\b|\bsays?\b(?! (?:what|which|how|if|whether))"
)
DESCRIBES = re.compile(r"\b(?:describe|description|detail|details|detailed|everything)\b")
READS_AS = N_("The text in the photo reads: {text}")
NO_TEXT = N_("I can't find any text in the photo.")
TRANSCRIBE = (
    "Transcribe the text written in the photo exactly as it appears, word for word, and nothing else. "
    "If there is no text, answer: none"
)
NO_READING = N_(
    "Reading the text in a photo needs an answer model that sees the photo, and mine reads only the caption and "
    "tags. The model sets that can read are {sets}."
)
READING_SETS = ("smolvlm-256m", "florence-2-base", "qwen2.5-vl-3b")
NOT_FETCHED = N_("I couldn't get the photo again to read it. Could you send it once more?")
_NONE = re.compile(r"^(?:none|no text|there is no text|nothing)\W*$", re.IGNORECASE)


# Questions CLIP's exact routes answer, unless the answer model has the photo: measured on the test world's held-out
# placed photos (docs/testing.md; the world's routing-table test fails when this goes against a clear measurement).
# "Is there any text?" reaches CLIP as a thing it cannot check (letters); any model that sees the photo reads it,
# Florence-2 by its OCR task (`read_text`). The rest go only to a model that chats about the photo: "where is it?"
# reaches CLIP as a place to name ("an airport"), and colour is answered for the thing asked about where CLIP weighs
# colour words against the whole photo (right 37 of 40 against CLIP's 29 on one world build, 33 against 29 on
# another); Florence-2's tasks answer neither, so CLIP does there. Shape, counting and the rest stay with CLIP.
# A (kind, None) row takes the kind's questions whatever they ask about ("what colour is the car?").
SEEN_BETTER: frozenset[tuple[RouteKind, str | None]] = frozenset(
    (RouteKind.PRESENCE, thing) for thing in ("text", "word", "words", "writing", "letters")
)
SEEN_BETTER_CHATTING: frozenset[tuple[RouteKind, str | None]] = frozenset(
    {(RouteKind.IDENTIFY, "place"), (RouteKind.COLOUR, None)}
)


def seen_better(route: Route, chats: bool = True) -> bool:
    """Whether a model that sees the photo answers `route`'s question better than CLIP's route does; `chats`: it
    answers any question about the photo (a chat VLM, a model server), not only the tasks it was prompted for."""
    rows = SEEN_BETTER | SEEN_BETTER_CHATTING if chats else SEEN_BETTER
    return (route.kind, route.subject) in rows or (route.kind, None) in rows


def seen_messages(
    conversation: Conversation,
    question: str,
    with_image: bool,
    fold_system: bool = False,
    instruction: str = SEEING_INSTRUCTION,
) -> list[dict[str, Any]]:
    """The chat in the content-part form VLM templates read; the photo goes with the question."""
    system = f"{instruction}\n{facts_text(photo_of(conversation))}"
    asked: list[dict[str, str]] = [{"type": "text", "text": question}]
    if with_image:
        asked.insert(0, {"type": "image"})
    turns = [{"role": str(role), "content": [{"type": "text", "text": text}]} for role, text in conversation.turns]
    messages = [*turns, {"role": "user", "content": asked}]
    if fold_system:  # a template without a system role: the facts open the first user turn
        first = messages[0]
        messages[0] = {"role": "user", "content": [{"type": "text", "text": f"{system}\n\n"}, *first["content"]]}
        return messages
    return [{"role": "system", "content": [{"type": "text", "text": system}]}, *messages]


def seen_inputs(
    model: AnswerModel,
    conversation: Conversation,
    question: str,
    picture: Any | None,
    budget: int,
    instruction: str = SEEING_INSTRUCTION,
) -> dict[str, torch.Tensor]:
    """The processor's inputs for the longest prompt within `budget` tokens, the photo's included: the oldest
    (user, assistant) pairs go first, and an over-long question keeps its end."""
    from jinja2 import TemplateError

    tokenizer = model.tokenizer
    ids = tokenizer.encode(" " + question.strip(), add_special_tokens=False)[-MAX_QUESTION_TOKENS:]
    question = decoded(tokenizer, ids).strip()
    turns = alternating(conversation.turns)
    pairs = [turns[i : i + 2] for i in range(0, len(turns), 2)]

    def inputs(kept: list[list[tuple[Any, str]]]) -> dict[str, torch.Tensor]:
        chosen = Conversation(conversation.image, tuple(turn for pair in kept for turn in pair))
        try:
            messages = seen_messages(chosen, question, picture is not None, instruction=instruction)
            prompt = model.processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        except TemplateError:
            messages = seen_messages(chosen, question, picture is not None, True, instruction)
            prompt = model.processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return photo_inputs(model, str(prompt), picture)

    while True:
        made = inputs(pairs)
        if not pairs or made["input_ids"].shape[1] <= budget:
            return made
        pairs = pairs[1:]


def answer_seeing(
    models: DialogueModels,
    conversation: Conversation,
    question: str,
    image: torch.Tensor,
    picture: Any | None,
    options: AnswerOptions,
    drafts: Drafts | None = None,
) -> Answer:
    """An open question for an answer model that sees images, with the photo (`picture`, a PIL image) when the
    bot has it; `image` is the photo's CLIP vector, which judges the answer."""
    model = models.answerer.get()
    facts = photo_of(conversation)
    if model.kind is AnswerKind.TASKS:
        return _by_task(models, conversation, question, image, picture, options, drafts, model)
    window = min(model.window, options.context_window or model.window)
    inputs = seen_inputs(model, conversation, question, picture, window - MIN_ANSWER_TOKENS)
    room = window - inputs["input_ids"].shape[1]
    candidates = min(options.candidates, SEEN_CANDIDATES)
    written = sample_from(model, inputs, candidates, max(1, min(options.max_tokens, room)), drafts)
    answer = judged(models, image, facts, written, sampled=candidates)
    answer.details["saw"] = picture is not None
    return answer


def _by_task(
    models: DialogueModels,
    conversation: Conversation,
    question: str,
    image: torch.Tensor,
    picture: Any | None,
    options: AnswerOptions,
    drafts: Drafts | None,
    model: AnswerModel,
) -> Answer:
    """Florence-2's tasks for what they answer; the other open questions to the words' answer model."""
    asked = question.lower()
    if picture is not None and READS.search(asked):
        return _read(run_task(model, picture, READ_TASK, TASK_TOKENS))  # as written: a sign may say "Caption:"
    if picture is not None and DESCRIBES.search(asked):
        text = clean(run_task(model, picture, DESCRIBE_TASK, TASK_TOKENS))
        whole = text[: text.rfind(".") + 1] or text  # whole sentences: a paragraph cut at the limit ends early
        answer = judged(models, image, photo_of(conversation), [Caption(whole, (), 0.0)] if whole else [])
        answer.details["saw"] = True
        return answer
    words = models.answerer.words
    if words is None:  # a task-prompted model loaded on its own: what the bot already knows
        return answer_describe(photo_of(conversation))
    return answer_open(models, conversation, question, image, options, drafts, model=words.get())


def read_text(
    models: DialogueModels,
    conversation: Conversation,
    picture: Any | None,
    options: AnswerOptions,
    drafts: Drafts | None = None,
) -> Answer:
    """The photo's text, transcribed by the answer model that sees it. CLIP does not judge a transcription: it
    scores how well words describe a photo, not whether the photo's letters spell them (a sign reading "SALE"
    and one reading "EXIT" look alike to it), so its check would only refuse text at random."""
    lazy = models.answerer
    if not lazy.sees_images:
        said = say(NO_READING, sets=", ".join(READING_SETS))
        return Answer(english(said), RouteKind.READ, 1.0, {"read": None}, said)
    if picture is None:  # the photo could not be fetched again: no text is made up from the caption
        return Answer(NOT_FETCHED, RouteKind.READ, 0.0, {"read": None, "saw": False}, say(NOT_FETCHED))
    model = lazy.get()
    if model.kind is AnswerKind.TASKS:
        return _read(run_task(model, picture, READ_TASK, TASK_TOKENS))
    window = min(model.window, options.context_window or model.window)
    only_photo = Conversation(conversation.image)  # earlier turns would only tempt it to answer, not transcribe
    inputs = seen_inputs(model, only_photo, TRANSCRIBE, picture, window - MIN_ANSWER_TOKENS, TRANSCRIBE)
    room = max(1, min(TASK_TOKENS, window - inputs["input_ids"].shape[1]))
    written = sample_from(model, inputs, 1, room, drafts, greedy=True)  # none: it wrote nothing or looped
    return _read(written[0].text if written else "")


def _read(text: str) -> Answer:
    """What was read, as said to the reader; the text itself in `details["read"]`."""
    text = text.strip()
    if _NONE.match(text):
        text = ""
    said = say(READS_AS, text=text) if text else say(NO_TEXT)
    return Answer(english(said), RouteKind.READ, 1.0, {"read": text, "saw": True}, said)


__all__ = [
    "NO_READING",
    "NO_TEXT",
    "READING_SETS",
    "READS_AS",
    "SEEING_INSTRUCTION",
    "SEEN_BETTER",
    "SEEN_BETTER_CHATTING",
    "TRANSCRIBE",
    "answer_seeing",
    "read_text",
    "seen_better",
    "seen_inputs",
    "seen_messages",
]
