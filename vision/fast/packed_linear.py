"""Linear layers on a CPU through oneDNN, their weights packed once at load time.

A caption is some 20 GPT-2 steps of a few rows each (one per photo in the batch), and at so few rows
PyTorch's default float32 matmul re-packs the whole weight matrix on every call; through oneDNN with the
weight packed beforehand the same product runs several times faster, GPT-2's 50257-word output layer most
of all, with the same tokens (docs/benchmarks.md has the figures). Inductor does the same packing when it
freezes a model; this is that one step, without compiling anything. bfloat16 linears gain as much where the
CPU multiplies bfloat16 natively (AVX-512 BF16, AMX); elsewhere bfloat16 is emulated and they stay.

    pack_linears(captioner.lm)      # every nn.Linear, in place; returns how many
    pack_linears(captioner.lm, few_rows=bf16_rows.load(cache_dir))  # bfloat16 at 1-3 rows by bf16_rows' kernel

The packed copy sits beside the weight (the module keeps `weight`, so state dicts, tied
embeddings and anything reading `lm_head.weight` see the usual tensor); inference only: pack once
the weights are in and on the CPU for good, since loading or moving weights afterwards leaves the
packed copies as they were.

Private PyTorch APIs, used only where `versions.known_to_work` says this torch is one they work on (else
nothing is packed, and one log line says why): `torch.ops.mkldnn._reorder_linear_weight` (packing),
`torch.ops.mkldnn._linear_pointwise` (the packed product) and `nn.MultiheadAttention._qkv_same_embed_dim`
(whether its input projection is one matrix). `linear_ops` names them for the benchmark's FLOP counter.
"""

from __future__ import annotations

import logging
from typing import TypeGuard, cast

import torch
import torch.nn.functional as F
from torch import nn

from ..catalog.devices import cpu_has_fast_bf16
from . import bf16_rows
from .versions import known_to_work

log = logging.getLogger(__name__)

# oneDNN picks the packed layout for a typical row count; any other count still works
ROWS_HINT = 16
PATH = "oneDNN packed linears"  # what the log line says is off, where the release is not known to work


def packing_available() -> bool:
    """oneDNN is in this PyTorch build, with the calls this module makes, on a release they are known to work on."""
    if not (torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")):
        return False
    return known_to_work(PATH, "torch")


def linear_ops() -> list:
    """The ops the speed paths run a linear layer as, x (..., K) -> (..., N), which PyTorch's FLOP counter
    does not know: oneDNN's packed product, and bf16_rows' kernel once it is loaded."""
    ops = [torch.ops.mkldnn._linear_pointwise] if packing_available() else []
    if hasattr(torch.ops.clipchat, "bf16_rows_linear"):
        ops.append(torch.ops.clipchat.bf16_rows_linear)
    return ops


def packed_dtypes() -> tuple[torch.dtype, ...]:
    """The dtypes whose linears get packed: bfloat16 only where the CPU multiplies it natively (oneDNN refuses
    to pack it elsewhere); none without oneDNN."""
    if not packing_available():
        return ()
    return (torch.float32, torch.bfloat16) if cpu_has_fast_bf16() else (torch.float32,)


class PackedLinear(nn.Module):
    """An nn.Linear's forward on oneDNN with a pre-packed weight: y = x W^T + b, x (..., in) -> (..., out)."""

    packed: torch.Tensor  # a buffer: oneDNN's layout of the weight
    _source: nn.Linear

    def __init__(self, linear: nn.Linear, few_rows: bool = False) -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.weight = linear.weight  # shared, not copied: tied weights stay tied
        self.bias = linear.bias
        # `few_rows`: bfloat16 products of up to bf16_rows.MAX_ROWS rows (a caption step for one to three photos)
        # through bf16_rows' kernel, which reads the plain weight at memory speed; the caller has loaded it
        self.few_rows = (
            few_rows
            and linear.weight.dtype == torch.bfloat16
            and linear.weight.is_contiguous()
            and (linear.bias is None or linear.bias.is_contiguous())
        )
        self.register_buffer("packed", _pack(linear.weight), persistent=False)
        # False: products of more rows than the kernel takes go to F.linear, as the plain module's would, where
        # the packed product measured slower on this CPU and the kernel faster (calibration; `unpack`)
        self.onednn = True
        # Not a child module (its parameters are these): it writes the state dict in its own layout
        # (GPT2Linear keeps Conv1D's), so checkpoints and weight comparisons see the model as loaded.
        object.__setattr__(self, "_source", linear)
        self.train(linear.training)  # a new module starts in training mode; a model packed after eval() stays in eval

    def _save_to_state_dict(self, destination, prefix, keep_vars):
        self._source._save_to_state_dict(destination, prefix, keep_vars)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.few_rows and 0 < x.numel() <= bf16_rows.MAX_ROWS * self.in_features and x.dtype == torch.bfloat16:
            return bf16_rows.linear(x, self.weight.detach(), self.bias.detach() if self.bias is not None else None)
        if not self.onednn:
            return F.linear(x, self.weight, self.bias)
        return _linear(x, self.packed, self.bias)

    def unpack(self) -> None:
        """Products of more than the kernel's rows through F.linear from now on, the packed copy freed."""
        self.onednn = False
        self.packed = torch.empty(0, dtype=self.weight.dtype)

    def extra_repr(self) -> str:
        few = f", up to {bf16_rows.MAX_ROWS} rows by bf16_rows" if self.few_rows else ""
        how = "packed for oneDNN" if self.onednn else "F.linear"
        return f"in_features={self.in_features}, out_features={self.out_features}, {how}{few}"


def _pack(weight: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return torch.ops.mkldnn._reorder_linear_weight(weight.detach(), ROWS_HINT)


class PackedSelfAttention(nn.Module):
    """An nn.MultiheadAttention used for self-attention (as open_clip's towers use it) with both projections
    packed: x (B, L, E) -> qkv (B, L, 3E) -> scaled_dot_product_attention over H heads -> out (B, L, E).

    Attention's own fast path multiplies by its input projection unpacked, and for one photo through
    ViT-B/32 in float32 those products are a large share of the tower's time. Anything else it is asked
    (cross-attention, padding or per-head masks, unbatched input, attention weights, training with its
    dropout) goes to the original module. Its state dict is the original's: in_proj_weight, in_proj_bias
    and out_proj.
    """

    packed_in: torch.Tensor  # buffers: oneDNN's layouts of the two projections
    packed_out: torch.Tensor
    _source: nn.MultiheadAttention

    def __init__(self, attention: nn.MultiheadAttention) -> None:
        super().__init__()
        self.num_heads, self.batch_first = attention.num_heads, attention.batch_first
        self.in_proj_weight, self.in_proj_bias = attention.in_proj_weight, attention.in_proj_bias  # shared
        self.out_proj = attention.out_proj
        self.register_buffer("packed_in", _pack(attention.in_proj_weight), persistent=False)
        self.register_buffer("packed_out", _pack(attention.out_proj.weight), persistent=False)
        object.__setattr__(self, "_source", attention)  # not a child: the state dict stays the original's
        self.train(attention.training)  # a new module starts in training mode, which the original would answer

    def train(self, mode: bool = True) -> PackedSelfAttention:
        self._source.train(mode)  # it answers what this module does not, in the same mode
        return super().train(mode)

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        key_padding_mask=None,
        need_weights: bool = True,
        attn_mask: torch.Tensor | None = None,
        **kwargs,
    ):
        if (
            not (query is key is value)
            or key_padding_mask is not None
            or need_weights
            or kwargs
            or self.training
            or query.dim() != 3
            or (attn_mask is not None and attn_mask.dim() != 2)
        ):
            return self._source(
                query,
                key,
                value,
                key_padding_mask=key_padding_mask,
                need_weights=need_weights,
                attn_mask=attn_mask,
                **kwargs,
            )
        x = query if self.batch_first else query.transpose(0, 1)  # (B, L, E)
        batch, length, width = x.shape
        qkv = _linear(x, self.packed_in, self.in_proj_bias)  # (B, L, 3E)
        q, k, v = qkv.view(batch, length, 3, self.num_heads, width // self.num_heads).permute(2, 0, 3, 1, 4)
        if attn_mask is not None and attn_mask.dtype == torch.bool:  # True means "masked out" here, "kept" there
            attn_mask = torch.zeros_like(attn_mask, dtype=q.dtype).masked_fill(attn_mask, float("-inf"))
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)  # (B, H, L, E / H)
        out = _linear(out.transpose(1, 2).reshape(batch, length, width), self.packed_out, self.out_proj.bias)
        return (out if self.batch_first else out.transpose(0, 1)), None


def _linear(x: torch.Tensor, packed: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    return torch.ops.mkldnn._linear_pointwise(x, packed, bias.detach() if bias is not None else None, "none", [], "")


def _packable_attention(module: nn.Module, dtypes: tuple[torch.dtype, ...]) -> TypeGuard[nn.MultiheadAttention]:
    return (
        type(module) is nn.MultiheadAttention
        and module._qkv_same_embed_dim
        and module.bias_k is None
        and not module.add_zero_attn
        and module.in_proj_weight.dtype in dtypes
        and module.in_proj_weight.device.type == "cpu"
    )


def pack_linears(model: nn.Module, few_rows: bool = False) -> int:
    """Swap every float32 nn.Linear on the CPU in `model` for a PackedLinear, and every bfloat16 one where the
    CPU multiplies bfloat16 natively; self-attention modules likewise for a PackedSelfAttention. Returns how
    many modules it swapped. `few_rows`: bf16_rows' kernel is loaded, for bfloat16 linears' few-row products."""
    if not packing_available():
        if not torch.backends.mkldnn.is_available():  # else versions.known_to_work has said why
            log.info("oneDNN packed linears unavailable in this PyTorch build; linears unchanged")
        return 0
    dtypes = packed_dtypes()
    swapped = 0
    for module in list(model.modules()):
        if isinstance(module, nn.MultiheadAttention | PackedSelfAttention):
            continue
        for name, child in list(module.named_children()):
            if _packable_attention(child, dtypes):
                setattr(module, name, PackedSelfAttention(child))
                swapped += 1
            elif (
                (type(child) is nn.Linear or _is_gpt2_linear(child))
                and child.weight.dtype in dtypes
                and child.weight.device.type == "cpu"
            ):
                setattr(module, name, PackedLinear(cast(nn.Linear, child), few_rows))  # or GPT-2's nn.Linear twin
                swapped += 1
    return swapped


def _is_gpt2_linear(module: nn.Module) -> bool:
    from ..models.language_model import GPT2Linear

    return isinstance(module, GPT2Linear)
