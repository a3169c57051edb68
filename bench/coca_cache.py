"""Greedy CoCa captions with a KV cache: CoCa at its best, for a fair baseline.

open_clip's CoCa `generate` re-runs both text towers over the whole sequence at
every step. Both are causal, so each step only needs the new token's queries
against the keys and values of the tokens before it; the decoder's cross-attention
keys and values come from the image and are computed once. This module runs
exactly that on CoCa's own weights (`tests/test_bench.py` checks the logits
against CoCa's forward).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

START_OF_TEXT = 49406  # open_clip's tokenizer

KV = tuple[torch.Tensor, torch.Tensor]  # (B, heads, T, head_dim) each


def _heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    batch, length, width = x.shape  # (B, T, W) -> (B, heads, T, W / heads)
    return x.view(batch, length, heads, width // heads).transpose(1, 2)


def _merge(x: torch.Tensor) -> torch.Tensor:
    batch, heads, length, size = x.shape  # (B, heads, T, d) -> (B, T, heads * d)
    return x.transpose(1, 2).reshape(batch, length, heads * size)


def _self_attention_step(block, x: torch.Tensor, cache: KV | None) -> tuple[torch.Tensor, KV]:
    """One new position through a causal ResidualAttentionBlock; x (B, 1, W)."""
    attn = block.attn
    q, k, v = F.linear(block.ln_1(x), attn.in_proj_weight, attn.in_proj_bias).chunk(3, dim=-1)
    q, k, v = (_heads(t, attn.num_heads) for t in (q, k, v))
    if cache is not None:
        k, v = torch.cat([cache[0], k], dim=2), torch.cat([cache[1], v], dim=2)
    # the newest position may see every cached one: causal without a mask
    x = x + block.ls_1(attn.out_proj(_merge(F.scaled_dot_product_attention(q, k, v))))
    x = x + block.ls_2(block.mlp(block.ln_2(x)))
    return x, (k, v)


def _image_keys_values(block, image_embs: torch.Tensor) -> KV:
    """A cross-attention block's keys and values over the image tokens, once per caption."""
    attn, width = block.attn, image_embs.shape[-1]
    kv = F.linear(block.ln_1_kv(image_embs), attn.in_proj_weight[width:], attn.in_proj_bias[width:])
    k, v = kv.chunk(2, dim=-1)
    return _heads(k, attn.num_heads), _heads(v, attn.num_heads)


def _cross_attention_step(block, x: torch.Tensor, image: KV) -> torch.Tensor:
    attn, width = block.attn, x.shape[-1]
    q = _heads(F.linear(block.ln_1(x), attn.in_proj_weight[:width], attn.in_proj_bias[:width]), attn.num_heads)
    x = x + block.ls_1(attn.out_proj(_merge(F.scaled_dot_product_attention(q, *image))))
    return x + block.ls_2(block.mlp(block.ln_2(x)))


@torch.inference_mode()
def greedy_logits(model, image_embs: torch.Tensor, steps: int, forced: torch.Tensor | None = None):
    """(B, tokens, W) image embeddings -> (B, steps) greedy tokens and (B, steps, vocab) logits.

    `forced` (B, steps) feeds those tokens instead of the argmax: the test compares logits on one sequence.
    """
    text, decoder = model.text, model.text_decoder
    cast = text.transformer.get_cast_dtype()
    image = [_image_keys_values(block, image_embs) for block in decoder.cross_attn]
    text_cache: list[KV | None] = [None] * len(text.transformer.resblocks)
    decoder_cache: list[KV | None] = [None] * len(decoder.resblocks)
    token = torch.full((len(image_embs), 1), START_OF_TEXT, dtype=torch.long, device=image_embs.device)
    tokens, logits = [], []
    for position in range(steps):
        x = text.token_embedding(token).to(cast) + text.positional_embedding[position].to(cast)  # (B, 1, W)
        for layer, block in enumerate(text.transformer.resblocks):
            x, text_cache[layer] = _self_attention_step(block, x, text_cache[layer])
        # CoCa's text tower hands its token outputs on without ln_final (only its CLS token gets it)
        for layer, (block, cross) in enumerate(zip(decoder.resblocks, decoder.cross_attn)):
            x, decoder_cache[layer] = _self_attention_step(block, x, decoder_cache[layer])
            x = _cross_attention_step(cross, x, image[layer])
        step_logits = (decoder.ln_final(x) @ decoder.text_projection)[:, -1]  # (B, vocab)
        logits.append(step_logits)
        token = step_logits.argmax(dim=-1, keepdim=True) if forced is None else forced[:, position : position + 1]
        tokens.append(token)
    return torch.cat(tokens, dim=1), torch.stack(logits, dim=1)
