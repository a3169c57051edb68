"""Float32 linear layers on a CPU through oneDNN, their weights packed once at load time.

A caption is 20 GPT-2 steps of a few rows each (one per photo in the batch), and at so few rows
PyTorch's default float32 matmul re-packs the whole weight matrix on every call: on a 2-core
Zen 4, GPT-2's 50257-word output layer took 36-40 ms for 16 rows, and the same product through
oneDNN with the weight packed beforehand 9 ms, and 16 photos' 20-token captions went from 2.4 s
to 1.1 s with the same tokens. Inductor does the same packing when it freezes a model; this is that one step,
without compiling anything.

    pack_linears(captioner.lm)      # every nn.Linear, in place; returns how many

The packed copy sits beside the weight (the module keeps `weight`, so state dicts, tied
embeddings and anything reading `lm_head.weight` see the usual tensor); inference only.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

log = logging.getLogger(__name__)

# oneDNN picks the packed layout for a typical row count; any other count still works
ROWS_HINT = 16


def packing_available() -> bool:
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


class PackedLinear(nn.Module):
    """An nn.Linear's forward on oneDNN with a pre-packed weight: y = x W^T + b, x (..., in) -> (..., out)."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.weight = linear.weight  # shared, not copied: tied weights stay tied
        self.bias = linear.bias
        with torch.no_grad():
            self.register_buffer("packed", torch.ops.mkldnn._reorder_linear_weight(linear.weight.detach(), ROWS_HINT),
                                 persistent=False)
        # Not a child module (its parameters are these): it writes the state dict in its own layout
        # (GPT2Linear keeps Conv1D's), so checkpoints and weight comparisons see the model as loaded.
        object.__setattr__(self, "_source", linear)

    def _save_to_state_dict(self, destination, prefix, keep_vars):
        self._source._save_to_state_dict(destination, prefix, keep_vars)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = self.bias.detach() if self.bias is not None else None
        return torch.ops.mkldnn._linear_pointwise(x, self.packed, bias, "none", [], "")

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, packed for oneDNN"


def pack_linears(model: nn.Module) -> int:
    """Swap every float32 nn.Linear on the CPU in `model` for a PackedLinear; returns how many.

    nn.MultiheadAttention's out_proj stays: attention reads its weight directly, never calls it."""
    if not packing_available():
        log.info("oneDNN packed linears unavailable in this PyTorch build; float32 linears unchanged")
        return 0
    swapped = 0
    for module in list(model.modules()):
        if isinstance(module, nn.MultiheadAttention):
            continue
        for name, child in list(module.named_children()):
            if (type(child) is nn.Linear or _is_gpt2_linear(child)) and child.weight.dtype == torch.float32 \
                    and child.weight.device.type == "cpu":
                setattr(module, name, PackedLinear(child))
                swapped += 1
    return swapped


def _is_gpt2_linear(module: nn.Module) -> bool:
    from .language_model import GPT2Linear

    return isinstance(module, GPT2Linear)
