"""Load a GPT-2-style causal language model and its tokenizer from the hub or a directory."""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import torch

from clipchat.errors import InvalidConfig, ModelNotFound

from ..catalog.model_sets import Ref

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


class LanguageModel(Protocol):
    """A causal language model as clipchat drives it: what `AutoModelForCausalLM` loads (GPT-2, any chat model),
    a torch module whose `generate` samples answers and scores their tokens."""

    def parameters(self, recurse: bool = True) -> Iterator[torch.nn.Parameter]: ...
    def generate(self, inputs: torch.Tensor | None = None, **kwargs: Any) -> Any: ...
    def compute_transition_scores(
        self,
        sequences: torch.Tensor,
        scores: tuple[torch.Tensor, ...],
        beam_indices: torch.Tensor | None = None,
        normalize_logits: bool = False,
    ) -> torch.Tensor: ...


@dataclass(frozen=True)
class Caption:
    """One decoded sentence."""

    text: str
    tokens: tuple[int, ...]
    log_prob: float  # mean per-token log-probability under the language model


def clean_text(text: str) -> str:
    """One tidy sentence: no surrounding space, no line breaks."""
    return " ".join(text.split())


def load_language_model(
    ref: Ref, device: torch.device, dtype: torch.dtype, cache_dir: Path | None = None
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """(model, tokenizer) in eval mode on `device`; SDPA attention and the KV cache are transformers' defaults."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if ref.scheme == "local-dir" and not Path(ref.target).is_dir():
        raise ModelNotFound(f"Language model directory {ref.target} does not exist.")
    kwargs = {"cache_dir": str(cache_dir)} if cache_dir else {}
    try:
        tokenizer = AutoTokenizer.from_pretrained(ref.pretrained_id, **kwargs)
        model = AutoModelForCausalLM.from_pretrained(ref.pretrained_id, dtype=dtype, **kwargs)
    except OSError as error:
        raise ModelNotFound(
            f"Could not load language model {ref}: {str(error).rstrip('.')}. If this machine is "
            "offline, run `clipchat prefetch` where it can reach the Hugging Face Hub."
        ) from error
    except ValueError as error:  # a config no causal LM class takes: a vision-language model, say
        raise InvalidConfig(
            f"{ref} is not a causal language model ({str(error).splitlines()[0].rstrip('.')}): the captioner "
            "decodes with GPT-2-style models; a vision-language model goes in answer_model (CLIPCHAT_ANSWER_MODEL)."
        ) from error
    # transformers wraps PreTrainedModel.to with functools.wraps, whose type mypy reads as the unbound function
    return model.to(device).eval(), tokenizer  # type: ignore[arg-type]


def stop_token_ids(tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """End of text, and the tokens that end a one-sentence caption: a full stop or a new line."""
    ids = {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()
    for text in (".", "\n"):
        encoded = tokenizer.encode(text, add_special_tokens=False)
        if len(encoded) == 1:
            ids.add(encoded[0])
    return sorted(ids)


def cache_keyword(lm: torch.nn.Module) -> str:
    """transformers 5.2x renamed `past_key_values` to `cache`; accept whichever this version has."""
    return "cache" if "cache" in inspect.signature(lm.forward).parameters else "past_key_values"


def output_cache(output):
    return output.cache if getattr(output, "cache", None) is not None else output.past_key_values


class GPT2Linear(torch.nn.Linear):
    """nn.Linear standing in for GPT-2's Conv1D, whose state dict keeps Conv1D's (in, out) layout,
    so checkpoints saved from or loaded into a linearized model stay ordinary GPT-2 checkpoints."""

    def _save_to_state_dict(self, destination, prefix, keep_vars):
        super()._save_to_state_dict(destination, prefix, keep_vars)
        destination[prefix + "weight"] = destination[prefix + "weight"].T.contiguous()

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        if prefix + "weight" in state_dict:
            state_dict[prefix + "weight"] = state_dict[prefix + "weight"].T
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


def linearize(lm: torch.nn.Module) -> int:
    """Swap GPT-2's Conv1D layers for nn.Linear with the same weights, transposed; returns how many.

    Same arithmetic, different kernel: on a CPU in bfloat16, Conv1D's addmm with the
    (in, out) weight measured 20% slower per caption at batch 1 and 9% at batch 16 than
    linear with the (out, in) weight, and the captions were token for token the same.
    """
    from transformers.pytorch_utils import Conv1D

    swapped = 0
    for module in list(lm.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, Conv1D):
                linear = GPT2Linear(
                    child.weight.shape[0], child.weight.shape[1], device=child.weight.device, dtype=child.weight.dtype
                )
                linear.weight = torch.nn.Parameter(child.weight.detach().T.contiguous(), requires_grad=False)
                linear.bias = torch.nn.Parameter(child.bias.detach().clone(), requires_grad=False)
                setattr(module, name, linear.train(child.training))
                swapped += 1
    return swapped
