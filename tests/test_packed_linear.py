"""Float32 linears through oneDNN with packed weights (vision.packed_linear): what load_models does on a CPU."""

from __future__ import annotations

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from vision.language_model import linearize
from vision.packed_linear import PackedLinear, pack_linears, packing_available

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


def test_the_loaded_world_models_run_their_float32_linears_packed(world_models) -> None:
    """CLIP stays float32 on every CPU; GPT-2 is float32 where the CPU lacks fast bfloat16."""
    for model in (world_models.captioner, world_models.encoder.model):
        attention = {id(m.out_proj) for m in model.modules() if isinstance(m, torch.nn.MultiheadAttention)}
        plain = [m for m in model.modules() if isinstance(m, torch.nn.Linear) and m.weight.dtype == torch.float32
                 and id(m) not in attention]
        assert not plain, f"{len(plain)} float32 linears left unpacked"
    assert any(isinstance(m, PackedLinear) for m in world_models.encoder.model.modules())
