"""The model that answers open questions: any transformers causal LM, or a vision-language model
(`vlm`), loaded when first needed.

    answerer = LazyAnswerModel(lambda: load_answer_model(ref, device, dtype), str(ref), kind)
    answerer.sees_images          # known before loading (from the config): whether questions bring the photo
    model = answerer.get()        # loads on the first open question, then stays
    model.window, model.chat      # context length from its config; whether it has a chat template

The captioner's own GPT-2 can serve (the guided set shares it); a separate model costs
its memory only once somebody asks an open question.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

from ..catalog.model_sets import Ref
from .language_model import load_language_model
from .vlm import AnswerKind, answer_kind, load_seeing_model

log = logging.getLogger(__name__)

# Config fields that hold the context length, across architectures (GPT-2 names it n_positions).
WINDOW_FIELDS = ("max_position_embeddings", "n_positions", "n_ctx", "seq_length", "max_sequence_length")


@dataclass(frozen=True)
class AnswerModel:
    lm: torch.nn.Module  # a transformers causal LM
    tokenizer: PreTrainedTokenizerBase
    window: int  # tokens the prompt and the answer share
    source: str
    processor: Any = None  # a vision-language model's processor (photo and text to inputs); None: a causal LM
    kind: AnswerKind = AnswerKind.WORDS

    @property
    def chat(self) -> bool:
        """Whether the tokenizer (or a VLM's processor) brings a chat template (instruction-tuned models do; GPT-2
        does not)."""
        return bool(getattr(self.processor or self.tokenizer, "chat_template", None))

    @property
    def sees_images(self) -> bool:
        return self.kind.sees_images

    @property
    def stop_ids(self) -> list[int]:
        """End of turn as the model knows it, any other special token (a chat template's role markers: the model
        has begun another turn), and a new line: answers are one or two sentences. Decoding skips special
        tokens, so an answer that ran on past one read as its words on both sides glued together."""
        ids: set[int] = set()
        text_config = _text_config(self.lm)  # a VLM's language model's; a causal LM's own config
        for source in (getattr(self.lm, "generation_config", None), self.lm.config, text_config, self.tokenizer):
            value = getattr(source, "eos_token_id", None)
            ids.update(value if isinstance(value, (list, tuple)) else [value] if value is not None else [])
        added = getattr(self.tokenizer, "added_tokens_decoder", {})
        ids.update(index for index, token in added.items() if getattr(token, "special", False))
        newline = self.tokenizer.encode("\n", add_special_tokens=False)
        if len(newline) == 1:
            ids.add(newline[0])
        return sorted(ids)

    @property
    def pad_id(self) -> int:
        pad = getattr(self.tokenizer, "pad_token_id", None)
        return pad if pad is not None else self.stop_ids[0]


def _text_config(lm: torch.nn.Module) -> Any:
    """The language model's config: a VLM's `text_config`, a causal LM's own."""
    config: Any = lm.config
    return config.get_text_config()


def context_window(lm: torch.nn.Module, tokenizer: PreTrainedTokenizerBase) -> int:
    config = _text_config(lm)  # a VLM keeps its language model's length there
    for name in WINDOW_FIELDS:
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    limit = getattr(tokenizer, "model_max_length", None)
    return limit if isinstance(limit, int) and 0 < limit < 1_000_000 else 1024


def answer_model_from(lm: torch.nn.Module, tokenizer: PreTrainedTokenizerBase, source: str) -> AnswerModel:
    return AnswerModel(lm, tokenizer, context_window(lm, tokenizer), source)


def load_answer_model(
    ref: Ref, device: torch.device, dtype: torch.dtype, cache_dir: Path | None = None, kind: AnswerKind | None = None
) -> AnswerModel:
    """A causal LM, or a vision-language model when its config is one (`vlm.answer_kind`; `kind` when known)."""
    kind = kind or answer_kind(ref, cache_dir)
    if kind.sees_images:
        return load_seeing_model(ref, device, dtype, cache_dir, kind)
    lm, tokenizer = load_language_model(ref, device, dtype, cache_dir)
    model = answer_model_from(lm, tokenizer, str(ref))
    log.info(
        "answer model %s loaded: %d-token window, %s",
        ref,
        model.window,
        "chat template" if model.chat else "plain prompt",
    )
    return model


class LazyAnswerModel:
    """Loads once, on the first `get()`; every later call returns the same model. `kind` is known before: whether
    questions must bring the photo is decided at start-up. `words`: for a task-prompted model (Florence-2, which
    cannot chat), the answer model of the open questions it cannot answer."""

    def __init__(
        self,
        load: Callable[[], AnswerModel],
        source: str,
        kind: AnswerKind = AnswerKind.WORDS,
        words: LazyAnswerModel | None = None,
    ) -> None:
        self._load = load
        self.source = source
        self.kind = kind
        self.words = words
        self._model: AnswerModel | None = None
        self._lock = threading.Lock()  # the model thread asks, but a warm-up or a test may ask from another

    @classmethod
    def ready(cls, model: AnswerModel, words: LazyAnswerModel | None = None) -> LazyAnswerModel:
        lazy = cls(lambda: model, model.source, model.kind, words)
        lazy._model = model
        return lazy

    @property
    def sees_images(self) -> bool:
        return self.kind.sees_images

    @property
    def loaded(self) -> bool:
        return self._model is not None

    def get(self) -> AnswerModel:
        if self._model is None:
            with self._lock:
                if self._model is None:
                    self._model = self._load()
        return self._model
