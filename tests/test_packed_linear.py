"""Linears and self-attention through oneDNN with packed weights (vision.fast.packed_linear): what load_models does on a CPU."""

from __future__ import annotations

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from vision.catalog.devices import cpu_has_fast_bf16
from vision.fast.packed_linear import PackedSelfAttention, pack_linears, packing_available
from vision.models.language_model import linearize

pytestmark = pytest.mark.skipif(not packing_available(), reason="this PyTorch build has no oneDNN")


def test_a_packed_language_model_computes_the_same_and_saves_the_same_checkpoint() -> None:
    torch.manual_seed(0)
    lm = GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=64, n_head=4, vocab_size=300)).eval()
    tokens = torch.randint(0, 300, (3, 7))
    with torch.inference_mode():
        before = lm(tokens).logits
    saved = {name: value.clone() for name, value in lm.state_dict().items()}
    linearize(lm)
    assert pack_linears(lm) == 2 * 4 + 1  # four per block, and the output layer
    assert lm.lm_head.weight is lm.transformer.wte.weight  # still tied
    with torch.inference_mode():
        after = lm(tokens).logits
    assert torch.allclose(before, after, atol=1e-5)
    assert (before.argmax(-1) == after.argmax(-1)).all()
    state = lm.state_dict()
    assert state.keys() == saved.keys()  # Conv1D's layout, as an ordinary GPT-2 checkpoint
    assert all(torch.equal(state[name], saved[name]) for name in saved)


def test_the_loaded_world_models_run_their_linears_and_attention_packed(world_models) -> None:
    """CLIP and GPT-2 are bfloat16 where the CPU multiplies it natively, float32 elsewhere."""
    packed_dtypes = (torch.float32, torch.bfloat16) if cpu_has_fast_bf16() else (torch.float32,)
    for model in (world_models.captioner, world_models.encoder.model):
        in_attention = {id(m.out_proj) for m in model.modules() if isinstance(m, PackedSelfAttention)}
        plain = [
            m
            for m in model.modules()
            if isinstance(m, torch.nn.Linear) and m.weight.dtype in packed_dtypes and id(m) not in in_attention
        ]
        assert not plain, f"{len(plain)} linears left unpacked"
        assert not any(type(m) is torch.nn.MultiheadAttention for m in model.modules())
        assert not any(m.training for m in model.modules())  # in training mode attention would run unpacked
    assert any(isinstance(m, PackedSelfAttention) for m in world_models.encoder.model.modules())


@pytest.mark.parametrize("batch_first", [True, False])
def test_packed_self_attention_attends_as_multihead_attention_does(batch_first: bool) -> None:
    torch.manual_seed(0)
    holder = torch.nn.Sequential(torch.nn.MultiheadAttention(64, 4, batch_first=batch_first)).eval()
    original = holder[0]
    x = torch.randn(3, 7, 64) if batch_first else torch.randn(7, 3, 64)
    causal = torch.full((7, 7), float("-inf")).triu(1)  # open_clip's text tower: an additive mask
    saved = {name: value.clone() for name, value in holder.state_dict().items()}
    with torch.inference_mode():
        expected = [original(x, x, x, need_weights=False, attn_mask=mask)[0] for mask in (None, causal, causal < 0)]
        weights = original(x, x, x)[1]
        assert pack_linears(holder) == 1
        packed = holder[0]
        assert isinstance(packed, PackedSelfAttention)
        got = [_packed_only(packed, x, attn_mask=mask) for mask in (None, causal, causal < 0)]
        assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(expected, got))
        # what it does not do itself, the original module does: the same weights, the same answer
        assert torch.equal(packed(x, x, x)[1], weights)
        other = torch.randn_like(x)
        assert torch.equal(
            packed(x, other, other, need_weights=False)[0], original(x, other, other, need_weights=False)[0]
        )
        per_head = causal.expand(3 * 4, 7, 7)  # (B * H, L, L), as open_clip builds for padded text
        assert torch.allclose(packed(x, x, x, need_weights=False, attn_mask=per_head)[0], expected[1], atol=1e-5)
        alone = x[0] if batch_first else x[:, 0]  # one sequence, unbatched: (L, E)
        assert torch.allclose(
            packed(alone, alone, alone, need_weights=False)[0],
            original(alone, alone, alone, need_weights=False)[0],
            atol=1e-5,
        )
    state = holder.state_dict()
    assert state.keys() == saved.keys() and all(torch.equal(state[name], saved[name]) for name in saved)


def _packed_only(packed: PackedSelfAttention, x: torch.Tensor, attn_mask=None) -> torch.Tensor:
    """Its answer from its own packed path: the original module, its fallback, must not be asked."""
    source = packed._source
    source.forward = lambda *args, **kwargs: pytest.fail("answered by the unpacked original")
    try:
        return packed(x, x, x, need_weights=False, attn_mask=attn_mask)[0]
    finally:
        del source.forward


def test_packed_self_attention_trains_as_the_original_does() -> None:
    """In training mode (dropout on) it is the original module, in the same mode, that answers."""
    torch.manual_seed(0)
    holder = torch.nn.Sequential(torch.nn.MultiheadAttention(64, 4, dropout=0.5, batch_first=True)).eval()
    original = holder[0]
    pack_linears(holder)
    holder.train()
    x = torch.randn(2, 5, 64)
    torch.manual_seed(1)
    packed_out = holder[0](x, x, x, need_weights=False)[0]
    torch.manual_seed(1)
    assert original.training and torch.equal(packed_out, original(x, x, x, need_weights=False)[0])
    holder.eval()
    assert not original.training
