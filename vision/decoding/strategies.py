"""How captions are decoded: frozen options, the strategy they pick, and `decode`.

    decode(captioner, clip_vectors, DecodingOptions(method="beam", beam_size=5))

Every method is a strategy object: a frozen dataclass whose fields are the method's
own parameters, with their defaults stated there and only there. `DecodingOptions`
leaves them None ("the method's default") and builds its strategy when it is made,
so a bad value or combination is refused before any model runs. Greedy decoding is
our own KV-cached loop, the only one, over a `steps.Step` (the plain transformers step, or a
faster one the captioner's chooser picks: `vision.fast`); beam search and nucleus sampling run
through transformers' `generate`; the guided method (no checkpoint) is `guided.Guided`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import ClassVar, Protocol

import torch

from clipchat.errors import InvalidConfig

from ..models.language_model import Caption, clean_text
from .guided import Guided
from .steps import choose


class Strategy(Protocol):
    OPTIONS: ClassVar[dict[str, str]]  # DecodingOptions field -> this strategy's field

    def check(self, options: DecodingOptions) -> None: ...
    def decode(self, captioner, clip: torch.Tensor, options: DecodingOptions) -> list[list[Caption]]: ...


@dataclass(frozen=True)
class Greedy:
    """Our own loop on the KV cache: one step per token and nothing else per step.

    `generate` runs the same arithmetic (argmax on the same float32 logits, so the same tokens on every
    held-out test-world photo, in float32 and bfloat16), but its per-step machinery (logits processors,
    stopping criteria, score bookkeeping) costs time on a GPU, where a small batch waits for Python. Every
    step, plain or fast, runs under this one loop: a speed path only computes logits.
    """

    OPTIONS: ClassVar[dict[str, str]] = {}

    def check(self, options: DecodingOptions) -> None:
        _one_caption(options)

    def decode(self, captioner, clip: torch.Tensor, options: DecodingOptions) -> list[list[Caption]]:
        prefix = captioner.prefix(clip)  # (B, prefix_length, lm_dim)
        batch, length = len(prefix), prefix.shape[1] + options.max_tokens - 1  # at most max_tokens - 1 fed back
        step = choose(captioner, batch, length, options.graphs)
        stop_ids = torch.tensor(captioner.stop_ids, device=prefix.device)
        logits, tokens, log_probs = step.first(prefix), [], []  # logits (B, vocab), float32 as `generate` scores
        finished = torch.zeros(batch, dtype=torch.bool, device=prefix.device)
        for position in range(options.max_tokens):
            token = logits.argmax(dim=-1)  # (B,)
            chosen = logits.log_softmax(dim=-1).gather(1, token[:, None])[:, 0]  # (B,)
            tokens.append(token)
            log_probs.append(chosen.masked_fill(finished, float("-inf")))  # after its stop: padding
            finished |= torch.isin(token, stop_ids)
            if position == options.max_tokens - 1:  # no step for a token never chosen
                break
            if (position + 1) % step.check_every == 0 and bool(finished.all()):
                break
            logits = step.next(token)
        return [
            [_caption(captioner, row, row_scores)]
            for row, row_scores in zip(torch.stack(tokens, dim=1), torch.stack(log_probs, dim=1))
        ]


class _Generate:
    """Beam search and sampling: transformers' `generate`, whose implementations these are."""

    def decode(self, captioner, clip: torch.Tensor, options: DecodingOptions) -> list[list[Caption]]:
        prefix = captioner.prefix(clip)  # (B, prefix_length, lm_dim)
        mask = torch.ones(prefix.shape[:2], dtype=torch.long, device=prefix.device)
        out = captioner.lm.generate(
            inputs_embeds=prefix,
            attention_mask=mask,
            max_new_tokens=options.max_tokens,
            eos_token_id=captioner.stop_ids,
            pad_token_id=captioner.tokenizer.eos_token_id,
            return_dict_in_generate=True,
            output_scores=True,
            **self.generate_kwargs(options),
        )
        scores = captioner.lm.compute_transition_scores(
            out.sequences, out.scores, getattr(out, "beam_indices", None), normalize_logits=True
        )
        captions = [_caption(captioner, row, row_scores) for row, row_scores in zip(out.sequences, scores)]
        n = options.num_candidates
        return [captions[i * n : (i + 1) * n] for i in range(len(prefix))]

    def generate_kwargs(self, options: DecodingOptions) -> dict:
        raise NotImplementedError


@dataclass(frozen=True)
class BeamSearch(_Generate):
    beam_size: int = 5  # ClipCap's

    OPTIONS: ClassVar[dict[str, str]] = {"beam_size": "beam_size"}

    def check(self, options: DecodingOptions) -> None:
        if self.beam_size < 1:
            raise InvalidConfig("beam_size must be at least 1.")
        if options.num_candidates > self.beam_size:
            raise InvalidConfig("num_candidates cannot exceed beam_size.")

    def generate_kwargs(self, options: DecodingOptions) -> dict:
        return {
            "do_sample": False,
            "num_beams": self.beam_size,
            "early_stopping": True,
            "num_return_sequences": options.num_candidates,
        }


@dataclass(frozen=True)
class NucleusSampling(_Generate):
    top_p: float = 0.9
    temperature: float = 1.0

    OPTIONS: ClassVar[dict[str, str]] = {"top_p": "top_p", "temperature": "temperature"}

    def check(self, options: DecodingOptions) -> None:
        if not 0 < self.top_p <= 1:
            raise InvalidConfig("top_p must be in (0, 1].")
        if self.temperature <= 0:
            raise InvalidConfig("temperature must be positive; use method='greedy' for deterministic output.")

    def decode(self, captioner, clip: torch.Tensor, options: DecodingOptions) -> list[list[Caption]]:
        # samples come unordered (beam search returns its beams best first already)
        return [
            sorted(group, key=lambda c: c.log_prob, reverse=True) for group in super().decode(captioner, clip, options)
        ]

    def generate_kwargs(self, options: DecodingOptions) -> dict:
        return {
            "do_sample": True,
            "top_p": self.top_p,
            "top_k": 0,
            "temperature": self.temperature,
            "num_return_sequences": options.num_candidates,
        }


STRATEGIES: dict[str, type[Strategy]] = {
    "greedy": Greedy,
    "beam": BeamSearch,
    "sample": NucleusSampling,
    "guided": Guided,
}
METHODS = tuple(STRATEGIES)


@dataclass(frozen=True)
class DecodingOptions:
    method: str | None = None  # None: the captioner's own (greedy with a checkpoint, guided without)
    max_tokens: int = 30  # one sentence: COCO captions average about 11 GPT-2 tokens
    num_candidates: int = 1  # captions returned per image, best first (beam and sample only)
    # Each method's own parameters; None means that method's default, stated in its strategy class.
    beam_size: int | None = None  # beam
    top_p: float | None = None  # sample
    temperature: float | None = None  # sample
    guided_top_k: int | None = None  # guided: LM candidates CLIP re-scores per step
    guided_alpha: float | None = None  # guided: degeneration penalty
    guided_beta: float | None = None  # guided: weight of the image
    guided_plausibility: float | None = None  # guided: candidates need p >= this x the best p
    # greedy only: a static KV cache and batches padded to fixed sizes, each step replayed as one CUDA graph on a
    # GPU, and CLIP's image tower too in `VisionModels.describe`; the same tokens as without (the suite holds
    # them). It asks the captioner's step chooser (`vision.pipeline` gives one): without one, the plain step runs
    graphs: bool = False

    def __post_init__(self) -> None:
        if self.method is None:
            self._check_common(owner=None)
            return
        if self.method not in STRATEGIES:
            raise InvalidConfig(f"Unknown decoding method {self.method!r}; choose one of {', '.join(METHODS)}.")
        self._check_common(owner=self.method)
        self.strategy().check(self)

    def _check_common(self, owner: str | None) -> None:
        if self.max_tokens < 1:
            raise InvalidConfig("max_tokens must be at least 1.")
        if self.num_candidates < 1:
            raise InvalidConfig("num_candidates must be at least 1.")
        if owner is None and self.num_candidates != 1:
            raise InvalidConfig("Name the method (beam or sample) to get several candidates.")
        if self.graphs and owner not in (None, "greedy"):
            raise InvalidConfig(f"graphs=True is for greedy decoding, not method={owner!r}.")
        for method, strategy in STRATEGIES.items():
            for name in strategy.OPTIONS:
                if getattr(self, name) is not None and owner != method:
                    raise InvalidConfig(f"{name} only applies to method={method!r}, not {owner!r}.")

    def for_captioner(self, captioner) -> DecodingOptions:
        """These options with the method made explicit: without one, the captioner's own (its first)."""
        return self if self.method is not None else replace(self, method=captioner.methods[0])

    def strategy(self) -> Strategy:
        """The method's strategy object, with the parameters these options set and its defaults for the rest."""
        if self.method is None:
            raise InvalidConfig("No decoding method yet: `for_captioner` picks the captioner's own.")
        cls = STRATEGIES[self.method]
        given = {field: getattr(self, name) for name, field in cls.OPTIONS.items() if getattr(self, name) is not None}
        return cls(**given)


@torch.inference_mode()
def decode(captioner, clip: torch.Tensor, options: DecodingOptions | None = None) -> list[list[Caption]]:
    """(B, clip_dim) raw CLIP vectors -> for each image, `num_candidates` captions, best first.

    Without a method, the captioner's own (its first in `captioner.methods`).
    """
    options = (options or DecodingOptions()).for_captioner(captioner)
    if options.method not in captioner.methods:
        raise InvalidConfig(captioner.refusal(options.method))
    if len(clip) == 0:
        return []
    grouped = options.strategy().decode(captioner, clip, options)
    # A candidate cut off by max_tokens is never a better caption than one that ended its sentence.
    return [sorted(group, key=lambda c: not (c.tokens and c.tokens[-1] in captioner.stop_ids)) for group in grouped]


def _one_caption(options: DecodingOptions) -> None:
    if options.num_candidates != 1:
        raise InvalidConfig(f"method={options.method!r} yields one caption; use beam or sample for several candidates.")


def _caption(captioner, tokens: torch.Tensor, scores: torch.Tensor) -> Caption:
    kept: list[int] = []
    for token in tokens.tolist():  # rows end at the first stop token; what follows is padding
        kept.append(token)
        if token in captioner.stop_ids:
            break
    finite = scores[: len(kept)]
    finite = finite[torch.isfinite(finite)]
    log_prob = float(finite.mean()) if len(finite) else 0.0
    return Caption(
        text=clean_text(captioner.tokenizer.decode(kept, skip_special_tokens=True)),
        tokens=tuple(kept),
        log_prob=log_prob,
    )


__all__ = ["METHODS", "STRATEGIES", "BeamSearch", "Caption", "DecodingOptions", "Greedy", "NucleusSampling", "decode"]
