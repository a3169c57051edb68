"""Captions with no captioning checkpoint: CLIP-guided GPT-2 decoding (MAGIC, Su et al. 2022).

At each step GPT-2 proposes its top-k next tokens. Each candidate is scored by

    (1 - alpha) * p_LM(token)  -  alpha * max cos(h_token, h_context)  +  beta * softmax_k(CLIP(image, text + token))

so the language model keeps the text fluent, the degeneration penalty stops it
repeating itself, and CLIP pulls it towards what is in the picture. Only
candidates the language model finds plausible compete (probability at least
`plausibility` times the best one's, as in contrastive decoding): CLIP reads
text as a bag of words and will otherwise prefer fragments like "a large a red".

Expected quality, honestly: with a GPT-2 trained or fine-tuned on caption-style
text (as in the MAGIC paper, or the test world) captions are short and mostly
right about the main object and colour. With stock GPT-2 they are looser: the
main object is usually named, but the sentence may wander and details can be
wrong. Prefer a ClipCap or own-trained prefix checkpoint when one is available;
this mode exists so the bot can always say something useful.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, cast

import torch
import torch.nn.functional as F

from clipchat.errors import InvalidConfig

from ..models.encoder import TextEncoder
from ..models.language_model import Caption, cache_keyword, clean_text, output_cache, stop_token_ids

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


@dataclass
class GuidedCaptioner:
    """A language model and the CLIP that steers it: what a model set without a captioning checkpoint has."""

    lm: torch.nn.Module  # a transformers causal LM
    tokenizer: PreTrainedTokenizerBase
    encoder: TextEncoder  # embeds the candidate texts
    prompt: str = ""  # e.g. "A picture of"; empty starts from the beginning-of-text token

    methods: ClassVar[tuple[str, ...]] = ("guided",)

    def __post_init__(self) -> None:
        self.stop_ids = stop_token_ids(self.tokenizer)

    def refusal(self, method: str) -> str:
        return f"Without a captioning checkpoint only guided decoding is possible, not {method!r}."

    def text(self, tokens: list[int]) -> str:
        body = cast(str, self.tokenizer.decode(tokens, skip_special_tokens=True))  # one sequence: one text
        return f"{self.prompt} {body.strip()}".strip() if self.prompt else body.strip()


@dataclass(frozen=True)
class Guided:
    """MAGIC search; its defaults are the paper's, with the plausibility filter from contrastive decoding."""

    top_k: int = 45  # LM candidates CLIP re-scores per step
    alpha: float = 0.1  # degeneration penalty
    beta: float = 2.0  # weight of the image
    plausibility: float = 0.1  # candidates need p >= this x the best p

    OPTIONS: ClassVar[dict[str, str]] = {
        "guided_top_k": "top_k",
        "guided_alpha": "alpha",
        "guided_beta": "beta",
        "guided_plausibility": "plausibility",
    }

    def check(self, options) -> None:
        if options.num_candidates != 1:
            raise InvalidConfig("method='guided' yields one caption; use beam or sample for several candidates.")
        if self.top_k < 1:
            raise InvalidConfig("guided_top_k must be at least 1.")
        if not 0 <= self.plausibility <= 1:
            raise InvalidConfig("guided_plausibility must be in [0, 1].")

    def decode(self, captioner: GuidedCaptioner, clip: torch.Tensor, options) -> list[list[Caption]]:
        """(B, D) raw CLIP image vectors -> one caption per image."""
        k, alpha, beta = self.top_k, self.alpha, self.beta
        lm, tokenizer, encoder = captioner.lm, captioner.tokenizer, captioner.encoder
        image = F.normalize(clip.float(), dim=-1).to(encoder.device)  # (B, D)
        b = len(clip)
        device = next(lm.parameters()).device

        start = tokenizer.encode(captioner.prompt, add_special_tokens=False) if captioner.prompt else []
        start = [tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id, *start]
        ids = torch.tensor([start] * b, device=device)  # (B, P)
        out = lm(ids, use_cache=True, output_hidden_states=True)
        cache, logits = output_cache(out), out.logits[:, -1]  # logits: (B, vocab)
        keyword = cache_keyword(lm)
        context = F.normalize(out.hidden_states[-1].float(), dim=-1)  # (B, P, H)
        generated: list[list[int]] = [[] for _ in range(b)]
        log_probs: list[list[float]] = [[] for _ in range(b)]
        finished = [False] * b

        for _ in range(options.max_tokens):
            probs = logits.float().softmax(dim=-1)
            top_probs, top_ids = probs.topk(k, dim=-1)  # (B, k)
            cache.batch_repeat_interleave(k)  # every candidate continues its own copy of the cache
            step = lm(top_ids.reshape(b * k, 1), use_cache=True, output_hidden_states=True, **{keyword: cache})
            hidden = F.normalize(step.hidden_states[-1][:, -1].float(), dim=-1).view(b, k, -1)  # (B, k, H)
            penalty = torch.einsum("bkh,bph->bkp", hidden, context).amax(dim=-1)  # (B, k)
            plausible = top_probs >= self.plausibility * top_probs[:, :1]  # (B, k); the top token always is
            rows_cols = plausible.nonzero().tolist()
            texts = [captioner.text(generated[i] + [int(top_ids[i, j])]) for i, j in rows_cols]
            sims = torch.full((b, k), float("-inf"), device=image.device)
            text_vectors = encoder.embed_texts(texts)  # (plausible candidates, D)
            sims[plausible.to(image.device)] = (text_vectors * image[[i for i, _ in rows_cols]]).sum(-1)
            grounding = (sims * encoder.logit_scale).softmax(dim=-1).to(top_probs.device)
            score = (1 - alpha) * top_probs - alpha * penalty + beta * grounding
            score = score.masked_fill(~plausible, float("-inf"))
            choice = score.argmax(dim=-1)  # (B,)
            rows = torch.arange(b, device=device) * k + choice
            cache = output_cache(step)
            cache.batch_select_indices(rows)
            logits = step.logits[rows, -1]
            chosen_hidden = hidden[torch.arange(b), choice]  # (B, H)
            context = torch.cat([context, chosen_hidden[:, None]], dim=1)
            for i in range(b):
                if finished[i]:
                    continue
                token = int(top_ids[i, choice[i]])
                generated[i].append(token)
                log_probs[i].append(float(top_probs[i, choice[i]].log()))
                finished[i] = token in captioner.stop_ids
            if all(finished):
                break
        return [
            [Caption(text=clean_text(captioner.text(tokens)), tokens=tuple(tokens), log_prob=sum(lp) / max(len(lp), 1))]
            for tokens, lp in zip(generated, log_probs)
        ]
