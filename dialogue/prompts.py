"""Prompts for the answer model: its chat template when it has one, else a short few-shot text.

The chat prompt's system message carries the caption, the tags CLIP found and those it is
confident about; the plain one carries the caption and tags as `Photo:`/`Tags:` lines, the
format GPT-2 continues best. Both keep the facts always; the oldest turns are dropped first
to fit the model's window, and an over-long question keeps its end, where the question
usually is.
"""

from __future__ import annotations

from clipchat.facts import PhotoFacts

from .conversation import Conversation

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


def _question_ids(tokenizer, question: str, room: int) -> list[int]:
    ids = tokenizer.encode(" " + question.strip(), add_special_tokens=False)
    return ids[len(ids) - room :] if len(ids) > room else ids


def _fit_turns(turns, cost, room: int) -> list[tuple[str, str]]:
    """The most recent turns whose cost fits in `room`, oldest first."""
    kept: list[tuple[str, str]] = []
    for turn in reversed(turns):
        if cost([turn, *kept]) > room:
            break
        kept.insert(0, turn)
    return kept


def alternating(turns) -> list[tuple[str, str]]:
    """Turns as strict templates want them (Llama 2, Mistral): starting with the user, roles alternating, and
    ending with the assistant, since the new question follows; neighbours of one role are joined."""
    merged: list[tuple[str, str]] = []
    for role, text in turns:
        text = " ".join(text.split())
        if merged and merged[-1][0] == role:
            merged[-1] = (role, f"{merged[-1][1]} {text}")
        elif merged or role == "user":
            merged.append((role, text))
    return merged[:-1] if merged and merged[-1][0] == "user" else merged


def _messages(system: str, turns, asked: str, fold_system: bool) -> list[dict]:
    messages = [{"role": role, "content": text} for role, text in turns] + [{"role": "user", "content": asked}]
    if fold_system:  # templates without a system role (Gemma, Mistral): the facts open the first user turn
        messages[0] = {"role": "user", "content": f"{system}\n\n{messages[0]['content']}"}
        return messages
    return [{"role": "system", "content": system}, *messages]


def chat_prompt(tokenizer, conversation: Conversation, question: str, budget: int) -> str:
    """The model's own chat template: a system message with the facts, recent turns, then the question."""
    from jinja2 import TemplateError

    system = system_message(conversation.image)
    turns = alternating(conversation.turns)
    fold_system = False
    try:
        tokenizer.apply_chat_template(_messages(system, (), "?", False), tokenize=False, add_generation_prompt=True)
    except TemplateError:
        fold_system = True

    def render(kept, asked: str) -> str:
        messages = _messages(system, kept, asked, fold_system)
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def size(text: str) -> int:
        return len(tokenizer.encode(text, add_special_tokens=False))

    room = max(1, min(MAX_QUESTION_TOKENS, budget - size(render((), ""))))
    question = tokenizer.decode(_question_ids(tokenizer, question, room)).strip()
    pairs = [tuple(turns[i : i + 2]) for i in range(0, len(turns), 2)]  # (user, assistant), dropped together
    kept = _fit_turns(pairs, lambda chosen: size(render([t for pair in chosen for t in pair], question)), budget)
    return render([turn for pair in kept for turn in pair], question)


def plain_prompt(tokenizer, conversation: Conversation, question: str, budget: int) -> str:
    """For a model without a chat template (GPT-2): the facts, turns as `User:`/`Assistant:` lines, an example
    first when the window has room for it."""
    facts = "Photo: {}\nTags: {}\n".format(conversation.image.caption, ", ".join(conversation.image.labels))

    def size(text: str) -> int:
        return len(tokenizer.encode(text, add_special_tokens=False))

    room = max(1, min(MAX_QUESTION_TOKENS, budget - size(facts + "User:\nAssistant:")))
    tail = f"User:{tokenizer.decode(_question_ids(tokenizer, question, room))}\nAssistant:"
    used = size(facts + tail)
    lines = [
        f"{'User' if role == 'user' else 'Assistant'}: {' '.join(text.split())}\n" for role, text in conversation.turns
    ]
    kept = _fit_turns(lines, lambda chosen: used + sum(size(line) for line in chosen), budget)
    prompt = facts + "".join(kept) + tail
    return EXAMPLE + prompt if size(EXAMPLE + prompt) <= budget else prompt
