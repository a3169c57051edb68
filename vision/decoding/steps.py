"""The steps of greedy decoding: prefix embeddings in, logits out; then one token in, logits out.

    step = captioner.choose_step(lm, batch, length, graphs=False) or ForwardStep(lm)
    logits = step.first(prefix)   # (B, P, D) prefix embeddings -> (B, vocab) float32 logits
    logits = step.next(token)     # (B,) the tokens just chosen -> (B, vocab) float32 logits

The one greedy loop (`strategies.Greedy`) runs on any `Step`. `ForwardStep`, the language model's own
`forward` over transformers' KV cache, is the plain step that every other must equal token for token
(the suite's step test holds them to it). Faster steps live in `vision.fast`; `vision.pipeline` hands its chooser to the
captioner (`choose_step`), so nothing here depends on them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import torch

from clipchat.errors import InvalidConfig

from ..models.language_model import cache_keyword, output_cache

if TYPE_CHECKING:
    from transformers import PreTrainedModel

    from ..models.captioner import PrefixCaptioner


class Step(Protocol):
    """A language model's greedy steps for one batch of captions, over at most the positions it was made for."""

    # tokens between the loop's checks that every caption has ended: 1 where a check costs nothing; more where
    # the step runs ahead of Python (a CUDA graph), since each check waits for it. Steps past every caption's
    # stop only add padding, which the loop drops.
    check_every: int

    def first(self, prefix: torch.Tensor) -> torch.Tensor:
        """(B, P, D) prefix embeddings at positions 0..P-1 -> (B, vocab) float32 logits after them."""
        ...

    def next(self, token: torch.Tensor) -> torch.Tensor:
        """(B,) tokens at the next position -> (B, vocab) float32 logits after them. The logits may be the step's
        own buffer, valid until its next call."""
        ...


class StepChooser(Protocol):
    """Picks a faster step for `lm` (`vision.fast.choose_step`), or None for `ForwardStep`. `length`: the
    positions the step must hold (the prefix and every token fed back); `graphs`: fixed shapes, replayed as
    CUDA graphs on a GPU (`DecodingOptions.graphs`)."""

    def __call__(self, lm: PreTrainedModel, batch: int, length: int, *, graphs: bool = False) -> Step | None: ...


class ForwardStep:
    """Any causal LM's steps through its own `forward` and transformers' KV cache: the plain step."""

    check_every = 1  # a step past every caption's stop would cost a whole forward: more than a check's wait

    def __init__(self, lm: PreTrainedModel) -> None:
        self.lm, self.keyword, self.cache = lm, cache_keyword(lm), None

    def first(self, prefix: torch.Tensor) -> torch.Tensor:
        return self._logits(self.lm(inputs_embeds=prefix, use_cache=True, logits_to_keep=1))

    def next(self, token: torch.Tensor) -> torch.Tensor:
        return self._logits(self.lm(input_ids=token[:, None], use_cache=True, **{self.keyword: self.cache}))

    def _logits(self, out) -> torch.Tensor:
        self.cache = output_cache(out)
        return out.logits[:, -1].float()  # (B, vocab)


def choose(captioner: PrefixCaptioner, batch: int, length: int, graphs: bool) -> Step:
    """The captioner's faster step where its chooser has one (`vision.pipeline` gives it one), else the plain."""
    chooser = captioner.choose_step
    if graphs and chooser is None:  # fixed shapes are a speed path: without one, graphs=True would do nothing
        raise InvalidConfig(
            "graphs=True needs the speed paths, which load_models plugs in; this captioner was built without them."
        )
    step = chooser(captioner.lm, batch, length, graphs=graphs) if chooser is not None else None
    return step if step is not None else ForwardStep(captioner.lm)
