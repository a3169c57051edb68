"""Load a GPT-2-style causal language model and its tokenizer from the hub or a directory."""

from __future__ import annotations

import inspect
from pathlib import Path

import torch

from .errors import ModelNotFound
from .model_sets import Ref


def load_language_model(ref: Ref, device: torch.device, dtype: torch.dtype, cache_dir: Path | None = None):
    """(model, tokenizer) in eval mode on `device`; SDPA attention and the KV cache are transformers' defaults."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if ref.scheme == "local-dir" and not Path(ref.target).is_dir():
        raise ModelNotFound(f"Language model directory {ref.target} does not exist.")
    kwargs = {"cache_dir": str(cache_dir)} if cache_dir else {}
    try:
        tokenizer = AutoTokenizer.from_pretrained(ref.pretrained_id, **kwargs)
        model = AutoModelForCausalLM.from_pretrained(ref.pretrained_id, dtype=dtype, **kwargs)
    except OSError as error:
        raise ModelNotFound(f"Could not load language model {ref}: {str(error).rstrip('.')}. If this machine is "
                            "offline, run `clipchat prefetch` where it can reach the Hugging Face Hub.") from error
    return model.to(device).eval(), tokenizer


def stop_token_ids(tokenizer) -> list[int]:
    """End of text, and the tokens that end a one-sentence caption: a full stop or a new line."""
    ids = {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()
    for text in (".", "\n"):
        encoded = tokenizer.encode(text, add_special_tokens=False)
        if len(encoded) == 1:
            ids.add(encoded[0])
    return sorted(ids)


def cache_keyword(lm) -> str:
    """transformers 5.2x renamed `past_key_values` to `cache`; accept whichever this version has."""
    return "cache" if "cache" in inspect.signature(lm.forward).parameters else "past_key_values"


def output_cache(output):
    return output.cache if getattr(output, "cache", None) is not None else output.past_key_values
