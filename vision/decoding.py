"""How captions are decoded: frozen options, a strategy picked from them, and `decode`.

    decode(captioner, clip_vectors, DecodingOptions(method="beam", beam_size=5))

Greedy decoding is our own KV-cached loop; beam search and nucleus sampling run
through transformers' `generate`; all start from the mapped prefix embeddings.
The guided method (no checkpoint) lives in `guided.py` and takes the same options.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .errors import InvalidOptions
from .language_model import cache_keyword, output_cache

METHODS = ("greedy", "beam", "sample", "guided")


@dataclass(frozen=True)
class DecodingOptions:
    method: str = "greedy"
    max_tokens: int = 30  # one sentence: COCO captions average about 11 GPT-2 tokens
    num_candidates: int = 1  # captions returned per image, best first (beam and sample only)
    beam_size: int | None = None  # beam only; None means ClipCap's 5
    top_p: float | None = None  # sample only; None means 0.9
    temperature: float | None = None  # sample only; None means 1.0
    guided_top_k: int | None = None  # guided only: LM candidates CLIP re-scores per step; None means MAGIC's 45
    guided_alpha: float | None = None  # guided only: degeneration penalty; None means MAGIC's 0.1
    guided_beta: float | None = None  # guided only: weight of the image; None means MAGIC's 2.0
    guided_plausibility: float | None = None  # guided only: candidates need p >= this x the best p; None: 0.1

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise InvalidOptions(f"Unknown decoding method {self.method!r}; choose one of {', '.join(METHODS)}.")
        if self.max_tokens < 1:
            raise InvalidOptions("max_tokens must be at least 1.")
        if self.num_candidates < 1:
            raise InvalidOptions("num_candidates must be at least 1.")
        owned = {"beam": ("beam_size",), "sample": ("top_p", "temperature"),
                 "guided": ("guided_top_k", "guided_alpha", "guided_beta", "guided_plausibility")}
        for method, names in owned.items():
            for name in names:
                if getattr(self, name) is not None and self.method != method:
                    raise InvalidOptions(f"{name} only applies to method={method!r}, not {self.method!r}.")
        if self.method in ("greedy", "guided") and self.num_candidates != 1:
            raise InvalidOptions(f"method={self.method!r} yields one caption; use beam or sample for "
                                 "several candidates.")
        if self.method == "beam" and self.num_candidates > (self.beam_size or 5):
            raise InvalidOptions("num_candidates cannot exceed beam_size.")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise InvalidOptions("top_p must be in (0, 1].")
        if self.temperature is not None and self.temperature <= 0:
            raise InvalidOptions("temperature must be positive; use method='greedy' for deterministic output.")
        if self.guided_top_k is not None and self.guided_top_k < 1:
            raise InvalidOptions("guided_top_k must be at least 1.")
        if self.guided_plausibility is not None and not 0 <= self.guided_plausibility <= 1:
            raise InvalidOptions("guided_plausibility must be in [0, 1].")


@dataclass(frozen=True)
class Caption:
    text: str
    tokens: tuple[int, ...]
    log_prob: float  # mean per-token log-probability under the language model


class Greedy:
    """Our own loop on the KV cache: one forward per token and nothing else per step.

    `generate` runs the same arithmetic (argmax on the same float32 logits, so the same
    tokens: all 240 held-out test-world captions matched in float32 and bfloat16), but
    its per-step machinery (logits processors, stopping criteria, score bookkeeping)
    costs time on a GPU: on an H100 in float16, models-only photos/s rose from 5.5 to
    8.7 at batch 1 and from 1004 to 1253 at batch 256. On a CPU the two are level.
    """

    def decode(self, captioner, prefix: torch.Tensor, options: DecodingOptions) -> list[list[Caption]]:
        lm, batch = captioner.lm, len(prefix)
        stop_ids = torch.tensor(captioner.stop_ids, device=prefix.device)
        out = lm(inputs_embeds=prefix, use_cache=True, logits_to_keep=1)
        cache, tokens, log_probs = output_cache(out), [], []
        keyword = cache_keyword(lm)
        finished = torch.zeros(batch, dtype=torch.bool, device=prefix.device)
        for _ in range(options.max_tokens):
            logits = out.logits[:, -1].float()  # (B, vocab), in float32 as `generate` scores them
            token = logits.argmax(dim=-1)  # (B,)
            chosen = logits.log_softmax(dim=-1).gather(1, token[:, None])[:, 0]  # (B,)
            tokens.append(token)
            log_probs.append(chosen.masked_fill(finished, float("-inf")))  # after its stop: padding
            finished |= torch.isin(token, stop_ids)
            if bool(finished.all()):
                break
            out = lm(input_ids=token[:, None], use_cache=True, **{keyword: cache})
            cache = output_cache(out)
        return [[_caption(captioner, row, row_scores)]
                for row, row_scores in zip(torch.stack(tokens, dim=1), torch.stack(log_probs, dim=1))]


class GenerateStrategy:
    """Beam search and sampling: transformers' `generate`, whose implementations these are."""

    def decode(self, captioner, prefix: torch.Tensor, options: DecodingOptions) -> list[list[Caption]]:
        mask = torch.ones(prefix.shape[:2], dtype=torch.long, device=prefix.device)
        out = captioner.lm.generate(
            inputs_embeds=prefix, attention_mask=mask, max_new_tokens=options.max_tokens,
            eos_token_id=captioner.stop_ids, pad_token_id=captioner.tokenizer.eos_token_id,
            return_dict_in_generate=True, output_scores=True, **self.generate_kwargs(options))
        scores = captioner.lm.compute_transition_scores(out.sequences, out.scores, getattr(out, "beam_indices", None),
                                                        normalize_logits=True)
        captions = [_caption(captioner, row, row_scores) for row, row_scores in zip(out.sequences, scores)]
        n = options.num_candidates
        return [captions[i * n:(i + 1) * n] for i in range(len(prefix))]

    def generate_kwargs(self, options: DecodingOptions) -> dict:
        raise NotImplementedError


class BeamSearch(GenerateStrategy):
    def generate_kwargs(self, options: DecodingOptions) -> dict:
        return {"do_sample": False, "num_beams": options.beam_size or 5, "early_stopping": True,
                "num_return_sequences": options.num_candidates}


class NucleusSampling(GenerateStrategy):
    def decode(self, captioner, prefix: torch.Tensor, options: DecodingOptions) -> list[list[Caption]]:
        # samples come unordered (beam search returns its beams best first already)
        return [sorted(group, key=lambda c: c.log_prob, reverse=True)
                for group in super().decode(captioner, prefix, options)]

    def generate_kwargs(self, options: DecodingOptions) -> dict:
        return {"do_sample": True, "top_p": options.top_p or 0.9, "top_k": 0,
                "temperature": options.temperature or 1.0, "num_return_sequences": options.num_candidates}


STRATEGIES = {"greedy": Greedy(), "beam": BeamSearch(), "sample": NucleusSampling()}


@torch.inference_mode()
def decode(captioner, clip: torch.Tensor, options: DecodingOptions = DecodingOptions()) -> list[list[Caption]]:
    """(B, clip_dim) raw CLIP vectors -> for each image, `num_candidates` captions, best first."""
    if options.method == "guided":
        raise InvalidOptions("The guided method needs the image and CLIP: call GuidedCaptioner.caption instead.")
    if len(clip) == 0:
        return []
    prefix = captioner.prefix(clip)  # (B, prefix_length, lm_dim)
    grouped = STRATEGIES[options.method].decode(captioner, prefix, options)
    # A candidate cut off by max_tokens is never a better caption than one that ended its sentence.
    return [sorted(group, key=lambda c: not (c.tokens and c.tokens[-1] in captioner.stop_ids)) for group in grouped]


def _caption(captioner, tokens: torch.Tensor, scores: torch.Tensor) -> Caption:
    kept: list[int] = []
    for token in tokens.tolist():  # rows end at the first stop token; what follows is padding
        kept.append(token)
        if token in captioner.stop_ids:
            break
    finite = scores[: len(kept)]
    finite = finite[torch.isfinite(finite)]
    log_prob = float(finite.mean()) if len(finite) else 0.0
    return Caption(text=clean_text(captioner.tokenizer.decode(kept, skip_special_tokens=True)),
                   tokens=tuple(kept), log_prob=log_prob)


def clean_text(text: str) -> str:
    """One tidy sentence: no surrounding space, no line breaks."""
    return " ".join(text.split())
