"""Prompts for the answer model: its chat template when it has one, else a short few-shot text.

Both carry the same facts (the caption, the tags CLIP found, and how sure it was) and
keep them always; the oldest turns are dropped first to fit the model's window, and an
over-long question keeps its end, where the question usually is.
"""

from __future__ import annotations

from clipchat.facts import PhotoFacts

from .conversation import Conversation

MAX_QUESTION_TOKENS = 200  # a pasted essay still leaves room for the photo's facts
INSTRUCTION = ("You answer questions about a photo you cannot see, only from these facts, which CLIP checked "
               "against the photo. Answer in one short sentence.")
# One worked example teaches a plain language model the format; it goes first, so it is dropped first.
EXAMPLE = ("Photo: A dog sitting on a couch.\nTags: dog, couch, living room\n"
           "User: what is the dog doing?\nAssistant: It is sitting on a couch.\n\n")


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
    return ids[len(ids) - room:] if len(ids) > room else ids


def _fit_turns(turns, cost, room: int) -> list[tuple[str, str]]:
    """The most recent turns whose cost fits in `room`, oldest first."""
    kept: list[tuple[str, str]] = []
    for turn in reversed(turns):
        if cost([turn, *kept]) > room:
            break
        kept.insert(0, turn)
    return kept


def chat_prompt(tokenizer, conversation: Conversation, question: str, budget: int) -> str:
    """The model's own chat template: a system message with the facts, recent turns, then the question."""
    system = system_message(conversation.image)

    def render(turns, asked: str) -> str:
        messages = [{"role": "system", "content": system}]
        messages += [{"role": role, "content": " ".join(text.split())} for role, text in turns]
        messages.append({"role": "user", "content": asked})
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def size(text: str) -> int:
        return len(tokenizer.encode(text, add_special_tokens=False))

    room = max(1, min(MAX_QUESTION_TOKENS, budget - size(render((), ""))))
    question = tokenizer.decode(_question_ids(tokenizer, question, room)).strip()
    return render(_fit_turns(conversation.turns, lambda turns: size(render(turns, question)), budget), question)


def plain_prompt(tokenizer, conversation: Conversation, question: str, budget: int) -> str:
    """For a model without a chat template (GPT-2): the facts, turns as `User:`/`Assistant:` lines, an example
    first when the window has room for it."""
    facts = "Photo: {}\nTags: {}\n".format(conversation.image.caption, ", ".join(conversation.image.labels))

    def size(text: str) -> int:
        return len(tokenizer.encode(text, add_special_tokens=False))

    room = max(1, min(MAX_QUESTION_TOKENS, budget - size(facts + "User:\nAssistant:")))
    tail = f"User:{tokenizer.decode(_question_ids(tokenizer, question, room))}\nAssistant:"
    used = size(facts + tail)
    lines = [f"{'User' if role == 'user' else 'Assistant'}: {' '.join(text.split())}\n"
             for role, text in conversation.turns]
    kept = _fit_turns(lines, lambda chosen: used + sum(size(line) for line in chosen), budget)
    prompt = facts + "".join(kept) + tail
    return EXAMPLE + prompt if size(EXAMPLE + prompt) <= budget else prompt
