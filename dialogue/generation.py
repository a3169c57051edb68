"""Open questions: the answer model continues a prompt made of the photo's facts and the conversation.

The answer model is the set's own (any causal LM, loaded on the first open question)
or the captioner's GPT-2. The prompt uses its chat template when it has one (see
prompts.py) and always fits its window. Several sampled answers are cleaned of role
markers, checked against the picture by CLIP, and reranked by CLIP similarity plus
likelihood, whichever model wrote them. While they are sampled, the first one's text so
far can go to `Drafts` (a private chat shows it as it is written); what CLIP then accepts
is the answer, whatever the drafts said.

An answer is kept from repeating itself, never from repeating the prompt: transformers'
`no_repeat_ngram_size` and `repetition_penalty` count the prompt's tokens too, and a chat
prompt holds the bot's earlier answers, each opening with the template's assistant header.
The first word of any earlier answer, and the end of any sentence said before, were banned;
a tiny chat model then went on past its sentence's end and glued a second one on ("The shape
is a crossIt is large.").
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol, cast

import torch

from clipchat.facts import PhotoFacts
from clipchat.i18n import english, say
from vision.models.answer_model import AnswerModel
from vision.models.language_model import Caption, LanguageModel
from vision.models.scoring import rerank

from .conversation import Answer, AnswerOptions, Conversation, DialogueModels
from .grounded import COLOURS
from .prompts import chat_prompt, decoded, photo_of, plain_prompt
from .routing import RouteKind

if TYPE_CHECKING:
    from transformers import LogitsProcessorList, PreTrainedTokenizerBase
    from transformers.generation import GenerateDecoderOnlyOutput

ROLE = re.compile(r"\b(?:User|Assistant|Photo|Tags|Caption|System)\s*:", re.IGNORECASE)
LOOP = re.compile(r"\b(\w+)(?:\W+\1\b){2,}", re.IGNORECASE)  # the same word three times running
MIN_ANSWER_TOKENS = 16  # the prompt always leaves at least this much of the window for the answer
NO_REPEAT_NGRAM = 3  # no three tokens twice in one answer
REPETITION_PENALTY = 1.2  # on the tokens the answer already used


class Drafts(Protocol):
    """Where an answer being written goes, called on the model thread as it grows."""

    def show(self, text: str) -> None:
        """The first sampled answer's text so far, cleaned as answers are."""

    def wanted(self) -> bool:
        """Whether anyone still reads them: when no one does, sampling stops early (the caller gave up)."""


class FirstAnswer:
    """`generate`'s streamer and a stopping criterion: hands the first sampled sequence's text so far to `drafts`
    at each token, and stops every sequence once no one wants them.

    All candidates are sampled in one batch as before, so streaming costs no extra pass; row 0 is as good a
    candidate as any, and CLIP's check and the rerank still decide the answer."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, stop_ids: list[int], drafts: Drafts) -> None:
        self.tokenizer, self.stop_ids, self.drafts = tokenizer, set(stop_ids), drafts
        self.tokens: list[int] = []
        self.shown = ""
        self.prompt_passed = False
        self.ended = False  # row 0 reached its end of turn: later tokens there are padding

    def put(self, value: torch.Tensor) -> None:
        if not self.prompt_passed:  # generate hands over the (expanded) prompt first
            self.prompt_passed = True
            return
        if self.ended:
            return
        token = int(value.reshape(-1)[0])  # one new token per sequence; row 0's
        if token in self.stop_ids:
            self.ended = True
            return
        self.tokens.append(token)
        text = clean(decoded(self.tokenizer, self.tokens, skip_special_tokens=True))
        if text and text != self.shown:
            self.shown = text
            self.drafts.show(text)

    def end(self) -> None:
        self.ended = True

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs: object) -> torch.Tensor:
        """Stopping criterion, checked after every step: all sequences at once, when the drafts are unwanted."""
        return torch.full((input_ids.shape[0],), not self.drafts.wanted(), dtype=torch.bool, device=input_ids.device)


def build_prompt(tokenizer: PreTrainedTokenizerBase, conversation: Conversation, question: str, budget: int) -> str:
    """The longest prompt within `budget` tokens: the chat template when the tokenizer has one."""
    if getattr(tokenizer, "chat_template", None):
        return chat_prompt(tokenizer, conversation, question, budget)
    return plain_prompt(tokenizer, conversation, question, budget)


def clean(text: str) -> str:
    """The answer turn only: up to the first line break or role marker, tidied."""
    text = text.split("\n", 1)[0]
    marker = ROLE.search(text)
    if marker:
        text = text[: marker.start()]
    return " ".join(text.split()).strip(" -:")


@torch.inference_mode()
def sample_answers(
    model: AnswerModel, prompt: str, options: AnswerOptions, max_tokens: int, drafts: Drafts | None = None
) -> list[Caption]:
    tokenizer = model.tokenizer
    device = next(model.lm.parameters()).device
    # A chat template already holds its special tokens; a plain prompt gets what the tokenizer adds.
    ids = tokenizer(prompt, return_tensors="pt", add_special_tokens=not model.chat).input_ids.to(device)
    return sample_from(model, {"input_ids": ids}, options.candidates, max_tokens, drafts)


@torch.inference_mode()
def sample_from(
    model: AnswerModel,
    inputs: dict[str, torch.Tensor],
    candidates: int,
    max_tokens: int,
    drafts: Drafts | None = None,
    greedy: bool = False,
) -> list[Caption]:
    """`candidates` answers sampled after the prompt in `inputs` (its `input_ids`, and for a model that sees
    images the processor's pixel values and the rest), cleaned, with their mean log-probability. `greedy`: the
    likeliest tokens instead (a transcription is not sampled)."""
    lm = cast(LanguageModel, model.lm)  # an answer model's module is a transformers generating model
    tokenizer = model.tokenizer
    ids = inputs["input_ids"]
    inputs = {"attention_mask": torch.ones_like(ids), **inputs}
    streaming: dict[str, Any] = {}
    if drafts is not None:
        from transformers import StoppingCriteriaList

        first = FirstAnswer(tokenizer, model.stop_ids, drafts)
        streaming = {"streamer": first, "stopping_criteria": StoppingCriteriaList([first])}
    out = cast(  # return_dict_in_generate: an output object, not the bare ids
        "GenerateDecoderOnlyOutput",
        lm.generate(
            **inputs,
            **({"do_sample": False} if greedy else {"do_sample": True, "top_p": 0.9, "temperature": 0.8}),
            num_return_sequences=candidates,
            max_new_tokens=max_tokens,
            logits_processor=answer_only_repetition(ids.shape[1]),
            no_repeat_ngram_size=0,  # the stock ones, which would count the prompt (a model's config may set them)
            repetition_penalty=1.0,
            eos_token_id=model.stop_ids,
            pad_token_id=model.pad_id,
            return_dict_in_generate=True,
            output_scores=True,
            **streaming,
        ),
    )
    assert out.scores is not None  # output_scores=True
    scores = lm.compute_transition_scores(out.sequences, out.scores, normalize_logits=True)
    answers = []
    for row, row_scores in zip(out.sequences[:, ids.shape[1] :], scores):
        text = clean(decoded(tokenizer, row.tolist(), skip_special_tokens=True))
        finite = row_scores[torch.isfinite(row_scores)]
        if text and not LOOP.search(text):
            answers.append(Caption(text, tuple(row.tolist()), float(finite.mean()) if len(finite) else 0.0))
    return answers


def answer_only_repetition(prompt_length: int) -> LogitsProcessorList:
    """transformers' repetition penalty and n-gram ban, over the tokens after the prompt's `prompt_length`."""
    from transformers import LogitsProcessorList, NoRepeatNGramLogitsProcessor, RepetitionPenaltyLogitsProcessor

    class AnswerNoRepeatNGram(NoRepeatNGramLogitsProcessor):
        def __call__(self, input_ids: torch.LongTensor, scores: torch.Tensor) -> torch.Tensor:
            return cast(torch.Tensor, super().__call__(input_ids[:, prompt_length:], scores))

    return LogitsProcessorList(
        [
            RepetitionPenaltyLogitsProcessor(REPETITION_PENALTY, prompt_ignore_length=prompt_length),
            AnswerNoRepeatNGram(NO_REPEAT_NGRAM),
        ]
    )


def contradiction(models: DialogueModels, image: torch.Tensor, text: str) -> str | None:
    """The first term in `text` that CLIP finds wrong for the photo, if any.

    Each mentioned colour or vocabulary label is swapped for its alternatives; if
    CLIP confidently prefers another version, the sentence contradicts the picture.
    """
    words = set(re.findall(r"[a-z]+", text.lower()))
    groups = [COLOURS] + [labels for _, labels in models.tagger.vocabulary.sections if len(labels) <= 40]
    for group in groups:
        for term in (t for t in group if " " not in t and t in words):
            variants = [re.sub(rf"\b{re.escape(term)}\b", other, text, flags=re.IGNORECASE) for other in group]
            probs = (models.encoder.logit_scale * models.encoder.embed_texts(variants) @ image.float()).softmax(-1)
            best = int(probs.argmax())
            if group[best] != term and probs[best] >= 0.5 and probs[group.index(term)] < 0.1:
                return term
    return None


def answer_open(
    models: DialogueModels,
    conversation: Conversation,
    question: str,
    image: torch.Tensor,
    options: AnswerOptions,
    drafts: Drafts | None = None,
    model: AnswerModel | None = None,
) -> Answer:
    """`model` (default: the set's answer model) writes candidates from the facts and turns; CLIP judges them."""
    image_facts = photo_of(conversation)
    model = model or models.answerer.get()
    window = min(model.window, options.context_window or model.window)
    prompt = build_prompt(model.tokenizer, conversation, question, window - MIN_ANSWER_TOKENS)
    room = window - len(model.tokenizer.encode(prompt, add_special_tokens=not model.chat))  # as sampled
    candidates = sample_answers(model, prompt, options, max(1, min(options.max_tokens, room)), drafts)
    return judged(models, image, image_facts, candidates)


def judged(
    models: DialogueModels,
    image: torch.Tensor,
    facts: PhotoFacts,
    candidates: Sequence[Caption],
    sampled: int | None = None,
) -> Answer:
    """The best candidate CLIP finds no contradiction in, reranked, whichever model wrote them; none left: say so
    and what the photo shows. `sampled`: how many were written, the unusable ones included (default: all kept)."""
    refused = {c.text: term for c in candidates if (term := contradiction(models, image, c.text))}
    kept = [c for c in candidates if c.text not in refused]
    if not kept:
        said = say(
            "I'm not sure how to answer that from the photo. What I can see is: {caption}",
            caption=facts.caption,
        )
        return Answer(english(said), RouteKind.OPEN, 0.0, {"refused": refused}, said)
    best, score = rerank(models.encoder, image, kept)[0]
    written = len(candidates) if sampled is None else sampled
    return Answer(best.text, RouteKind.OPEN, score, {"refused": refused, "candidates": written})
