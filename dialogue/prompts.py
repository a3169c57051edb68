"""Prompts for the answer model: its chat template when it has one, else a short few-shot text.

The chat prompt's system message carries the caption, the tags CLIP found and those it is
confident about; the plain one carries the caption and tags as `Photo:`/`Tags:` lines, the
format GPT-2 continues best. Both keep the facts always; the oldest turns are dropped first
to fit the model's window, and an over-long question keeps its end, where the question
usually is.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, TypeVar, cast

from clipchat.facts import PhotoFacts
from clipchat.kinds import Role

from .conversation import Conversation

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

T = TypeVar("T")
Turn = tuple[Role, str]

MAX_QUESTION_TOKENS = 200  # a pasted essay still leaves room for the photo's facts
INSTRUCTION = (
    "You answer questions about a photo you cannot see, only from these facts, which CLIP checked "
    "against the photo. Answer in one short sentence."
)
# One worked example teaches a plain language model the format; it goes first, so it is dropped first.
EXAMPLE = (
    "Photo: A dog sitting on a couch.\nTags: dog, couch, living room\n"
    "User: what is the dog doing?\nAssistant: It is sitting on a couch.\n\n"
)


def facts_text(image: PhotoFacts) -> str:
    """What the answer model knows of the photo, in the words both prompt styles use."""
    sure = [tag.label for tag in image.tags if tag.score >= 0.5]
    lines = [f"Caption: {image.caption}", f"Tags: {', '.join(image.labels) or 'none'}"]
    if sure:
        lines.append(f"CLIP is confident about: {', '.join(sure)}")
    return "\n".join(lines)


def system_message(image: PhotoFacts) -> str:
    return f"{INSTRUCTION}\n{facts_text(image)}"


def photo_of(conversation: Conversation) -> PhotoFacts:
    """The photo a prompt is about; there is no prompt without one (`dialogue.answer` says so first)."""
    if conversation.image is None:
        raise ValueError("a prompt needs the photo's facts")
    return conversation.image


def decoded(tokenizer: PreTrainedTokenizerBase, ids: list[int], skip_special_tokens: bool = False) -> str:
    """One sequence's text (`decode` is typed for batches too)."""
    return cast(str, tokenizer.decode(ids, skip_special_tokens=skip_special_tokens))


def _question_ids(tokenizer: PreTrainedTokenizerBase, question: str, room: int) -> list[int]:
    ids: list[int] = tokenizer.encode(" " + question.strip(), add_special_tokens=False)
    return ids[len(ids) - room :] if len(ids) > room else ids


def _fit_turns(turns: Sequence[T], cost: Callable[[list[T]], int], room: int) -> list[T]:
    """The most recent turns whose cost fits in `room`, oldest first."""
    kept: list[T] = []
    for turn in reversed(turns):
        if cost([turn, *kept]) > room:
            break
        kept.insert(0, turn)
    return kept


def alternating(turns: Sequence[Turn]) -> list[Turn]:
    """Turns as strict templates want them (Llama 2, Mistral): starting with the user, roles alternating, and
    ending with the assistant, since the new question follows; neighbours of one role are joined."""
    merged: list[Turn] = []
    for role, text in turns:
        text = " ".join(text.split())
        if merged and merged[-1][0] == role:
            merged[-1] = (role, f"{merged[-1][1]} {text}")
        elif merged or role == Role.USER:
            merged.append((role, text))
    return merged[:-1] if merged and merged[-1][0] == Role.USER else merged


def _messages(system: str, turns: Sequence[Turn], asked: str, fold_system: bool) -> list[dict[str, str]]:
    messages = [{"role": role, "content": text} for role, text in turns] + [{"role": "user", "content": asked}]
    if fold_system:  # templates without a system role (Gemma, Mistral): the facts open the first user turn
        messages[0] = {"role": "user", "content": f"{system}\n\n{messages[0]['content']}"}
        return messages
    return [{"role": "system", "content": system}, *messages]


def chat_messages(conversation: Conversation, question: str) -> list[dict[str, str]]:
    """What `chat_prompt` renders, as the messages of an OpenAI-style chat API (a model server applies its own
    template): the system message with the facts, the recent turns as strict templates want them, the question.
    A server has no tokenizer here to fit a window with: the core already keeps only the recent turns."""
    return _messages(system_message(photo_of(conversation)), alternating(conversation.turns), question.strip(), False)


def chat_prompt(tokenizer: PreTrainedTokenizerBase, conversation: Conversation, question: str, budget: int) -> str:
    """The model's own chat template: a system message with the facts, recent turns, then the question."""
    from jinja2 import TemplateError

    system = system_message(photo_of(conversation))
    turns = alternating(conversation.turns)
    fold_system = False
    try:
        tokenizer.apply_chat_template(_messages(system, (), "?", False), tokenize=False, add_generation_prompt=True)
    except TemplateError:
        fold_system = True

    def render(kept: Sequence[Turn], asked: str) -> str:
        messages = _messages(system, kept, asked, fold_system)
        # tokenize=False: the prompt's text, not ids
        return cast(str, tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))

    def size(text: str) -> int:
        return len(tokenizer.encode(text, add_special_tokens=False))

    room = max(1, min(MAX_QUESTION_TOKENS, budget - size(render((), ""))))
    question = decoded(tokenizer, _question_ids(tokenizer, question, room)).strip()
    pairs = [tuple(turns[i : i + 2]) for i in range(0, len(turns), 2)]  # (user, assistant), dropped together
    kept = _fit_turns(pairs, lambda chosen: size(render([t for pair in chosen for t in pair], question)), budget)
    return render([turn for pair in kept for turn in pair], question)


def plain_prompt(tokenizer: PreTrainedTokenizerBase, conversation: Conversation, question: str, budget: int) -> str:
    """For a model without a chat template (GPT-2): the facts, turns as `User:`/`Assistant:` lines, an example
    first when the window has room for it."""
    image = photo_of(conversation)
    facts = "Photo: {}\nTags: {}\n".format(image.caption, ", ".join(image.labels))

    def size(text: str) -> int:
        return len(tokenizer.encode(text, add_special_tokens=False))

    room = max(1, min(MAX_QUESTION_TOKENS, budget - size(facts + "User:\nAssistant:")))
    tail = f"User:{decoded(tokenizer, _question_ids(tokenizer, question, room))}\nAssistant:"
    used = size(facts + tail)
    lines = [
        f"{'User' if role == 'user' else 'Assistant'}: {' '.join(text.split())}\n" for role, text in conversation.turns
    ]
    kept = _fit_turns(lines, lambda chosen: used + sum(size(line) for line in chosen), budget)
    prompt = facts + "".join(kept) + tail
    return EXAMPLE + prompt if size(EXAMPLE + prompt) <= budget else prompt
