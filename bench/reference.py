"""ClipCap's own decoding loop, kept as the baseline that tests and benchmarks compare against.

It feeds the whole sequence (prefix plus every token so far) through GPT-2 at
each step, with no KV cache and one image at a time, and takes the argmax, as
ClipCap's `predict.py` does. Quadratic in length: use `decoding.decode` to caption.
"""

from __future__ import annotations

import torch


@torch.inference_mode()
def reference_greedy(captioner, clip: torch.Tensor, max_tokens: int = 30) -> list[int]:
    """One image's (clip_dim,) raw CLIP vector -> greedy token ids, ending with the stop token if reached."""
    embeds = captioner.prefix(clip.unsqueeze(0))  # (1, prefix_length, lm_dim)
    table = captioner.lm.get_input_embeddings()
    tokens: list[int] = []
    for _ in range(max_tokens):
        logits = captioner.lm(inputs_embeds=embeds, use_cache=False).logits[:, -1]  # (1, vocab)
        token = int(logits.argmax(dim=-1))
        tokens.append(token)
        if token in captioner.stop_ids:
            break
        embeds = torch.cat([embeds, table(torch.tensor([[token]], device=embeds.device))], dim=1)
    return tokens
