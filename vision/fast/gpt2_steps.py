"""GPT-2's greedy steps on a CPU without transformers' per-call machinery: the same modules, called directly.

At one photo a caption step is bound by reading GPT-2's weights, and what transformers adds around them
(cache objects, mask building, output records) costs a good part as much again (docs/benchmarks.md has the
figures). Here the arithmetic is the model's own: its layer norms, its (packed) linears and activation, and
`scaled_dot_product_attention` as its sdpa attention calls it, over a KV buffer allocated once for the whole
caption instead of a cache grown by `cat`. The same tokens as `forward`, as the suite's step test holds.

    steps = Gpt2Steps(lm, batch=4, length=prefix_length + max_tokens - 1)
    logits = steps.first(prefix)  # (B, vocab) after the prefix embeddings (B, P, D)
    logits = steps.next(token)    # (B, vocab) after one more token (B,)

Only a plain GPT-2 in inference mode on a CPU (`Gpt2Steps.fits`), whose sdpa attention this mirrors,
scale included; anything else decodes through `forward`. `first` takes the whole prefix at position 0,
`next` one token at a time: a `vision.decoding.steps.Step`.

Where every linear of a bfloat16 GPT-2 takes bf16_rows' few-row kernel (one to three captions; `_fused_params`
has the whole condition), `next` runs the whole step in C++ (`bf16_rows.gpt2_step`): the same ATen calls as
`_forward`, so the same bits, without Python between its 400-odd calls.

Private APIs, used only where `versions.known_to_work` says torch and transformers are releases they work on
(else `fits` is False, one log line says why, and `forward` runs): transformers' `config._attn_implementation`
(which attention the model runs), PyTorch's `Module._forward_hooks` and `_forward_pre_hooks` and
`torch.nn.modules.module._global_forward_hooks` and `_global_forward_pre_hooks` (hooks these steps would
bypass), and accelerate's `_hf_hook` marker.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from . import bf16_rows
from .packed_linear import PackedLinear
from .versions import known_to_work

PATH = "the lean GPT-2 steps"  # what the log line says is off, where a release is not known to work


class Gpt2Steps:
    """A plain GPT-2's greedy steps for `batch` captions over at most `length` positions (see the module's
    docstring)."""

    check_every = 1  # on a CPU, asking whether every caption has ended costs nothing

    def __init__(self, lm, batch: int, length: int) -> None:
        self.lm, self.blocks = lm, list(lm.transformer.h)
        self.heads, self.width = lm.config.n_head, lm.config.n_embd
        head_dim = self.width // self.heads
        # per block, keys and values (2, B, H, length, head_dim): allocated once, where a growing cache would
        # copy itself at every token
        self.kv = [
            torch.empty(
                2,
                batch,
                self.heads,
                length,
                head_dim,
                dtype=block.attn.c_attn.weight.dtype,
                device=block.attn.c_attn.weight.device,
            )
            for block in self.blocks
        ]
        self.filled = 0
        self.scales = [block.attn.scaling for block in self.blocks]
        self.fused = _fused_params(lm) if batch <= bf16_rows.MAX_ROWS else None

    @staticmethod
    def fits(lm) -> bool:
        """A plain GPT-2 in inference on a CPU, attending through sdpa, with nothing hooked into its modules
        (these steps call its layers directly, past any hook or dropout)."""
        from transformers import GPT2LMHeadModel

        return (
            type(lm) is GPT2LMHeadModel
            and lm.lm_head.weight.device.type == "cpu"
            and known_to_work(PATH, "torch", "transformers")  # after the checks that cost nothing and say nothing
            and lm.config._attn_implementation == "sdpa"
            and not lm.config.add_cross_attention
            and not any(
                m.training or m._forward_hooks or m._forward_pre_hooks or hasattr(m, "_hf_hook") for m in lm.modules()
            )
        )

    def first(self, prefix: torch.Tensor) -> torch.Tensor:
        return self._forward(prefix)

    def next(self, token: torch.Tensor) -> torch.Tensor:
        x = self.lm.transformer.wte(token[:, None])  # (B, 1, D)
        if self.fused is None:
            return self._forward(x)
        h = x + self.lm.transformer.wpe(torch.arange(self.filled, self.filled + 1, device=x.device))
        logits = bf16_rows.gpt2_step(
            h, self.fused, self.kv, self.filled, self.heads, self.scales, self.lm.config.layer_norm_epsilon
        )
        self.filled += 1
        return logits

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, T, D) input embeddings at the next T positions -> (B, vocab) float32 logits at the last."""
        transformer = self.lm.transformer
        batch, length, _ = x.shape
        start, end = self.filled, self.filled + length
        h = x + transformer.wpe(torch.arange(start, end, device=x.device))  # (B, T, D)
        for block, kv in zip(self.blocks, self.kv):
            q, k, v = block.attn.c_attn(block.ln_1(h)).split(self.width, dim=2)  # each (B, T, D)
            q = q.view(batch, length, self.heads, -1).transpose(1, 2)  # (B, H, T, head_dim)
            kv[0, :, :, start:end] = k.view(batch, length, self.heads, -1).transpose(1, 2)
            kv[1, :, :, start:end] = v.view(batch, length, self.heads, -1).transpose(1, 2)
            attended = F.scaled_dot_product_attention(
                q, kv[0, :, :, :end], kv[1, :, :, :end], is_causal=length > 1, scale=block.attn.scaling
            )  # (B, H, T, head_dim)
            h = block.attn.c_proj(attended.transpose(1, 2).reshape(batch, length, self.width)) + h
            h = block.mlp.c_proj(block.mlp.act(block.mlp.c_fc(block.ln_2(h)))) + h
        self.filled = end
        return self.lm.lm_head(transformer.ln_f(h[:, -1:]))[:, -1].float()  # (B, vocab)


def _fused_params(lm) -> list[torch.Tensor] | None:
    """What bf16_rows.gpt2_step takes for `lm`'s steps (per block ln_1, c_attn, attn.c_proj, ln_2, c_fc and
    mlp.c_proj, weight and bias each; then ln_f and the output layer's weight), where it computes what `_forward`
    does: every linear on the few-row kernel, layer norms of the configured epsilon, and gelu_new, whose
    operations the C++ repeats, none of them with a forward of its own (a hub kernel, say) or hooks for the C++
    to skip; else None."""
    from torch.nn.modules import module as torch_module
    from transformers.activations import NewGELUActivation

    transformer = lm.transformer
    if getattr(torch_module, "_global_forward_hooks", None) or getattr(torch_module, "_global_forward_pre_hooks", None):
        # hooks on every module (nn.modules.module.register_module_forward_hook): _forward runs them. FlopCounterMode
        # sets such hooks, so the benchmark's count sees each step's linears and attention (test_bf16_rows holds it)
        return None
    norms = [m for block in transformer.h for m in (block.ln_1, block.ln_2)] + [transformer.ln_f]
    linears = [
        m for block in transformer.h for m in (block.attn.c_attn, block.attn.c_proj, block.mlp.c_fc, block.mlp.c_proj)
    ] + [lm.lm_head]
    if (
        not all(type(m) is nn.LayerNorm and m.eps == lm.config.layer_norm_epsilon for m in norms)
        or not all(isinstance(m, PackedLinear) and m.few_rows for m in linears)
        or lm.lm_head.bias is not None
        or not all(type(block.mlp.act) is NewGELUActivation for block in transformer.h)
        or any(m.weight is None or m.bias is None for m in norms + linears[:-1])
        or any("forward" in vars(m) for m in norms + linears + [block.mlp.act for block in transformer.h])
    ):
        return None
    params = [
        tensor.detach()
        for block in transformer.h
        for m in (block.ln_1, block.attn.c_attn, block.attn.c_proj, block.ln_2, block.mlp.c_fc, block.mlp.c_proj)
        for tensor in (m.weight, m.bias)
    ]
    return [*params, transformer.ln_f.weight.detach(), transformer.ln_f.bias.detach(), lm.lm_head.weight.detach()]
