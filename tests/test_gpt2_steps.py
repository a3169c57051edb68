"""vision.fast.gpt2_steps (GPT-2's modules called directly over a KV buffer): which models take it, and GPT-2's
variants step to `forward`'s logits. That the world's captions match `forward`'s token for token is
tests/test_steps.py's."""

from __future__ import annotations

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

from vision.fast.gpt2_steps import Gpt2Steps


def test_only_a_plain_gpt2_in_inference_on_a_cpu_takes_the_lean_steps() -> None:
    small = dict(n_layer=1, n_embd=32, n_head=2, vocab_size=50)
    plain = GPT2LMHeadModel(GPT2Config(**small)).eval()
    assert Gpt2Steps.fits(plain)
    assert not Gpt2Steps.fits(GPT2LMHeadModel(GPT2Config(**small)).train())
    plain.transformer.h[0].attn.attn_dropout.train()  # one layer left in training: its dropout would be skipped
    assert not Gpt2Steps.fits(plain)
    plain.eval()
    hook = plain.transformer.h[0].mlp.register_forward_hook(lambda *args: None)  # these steps would bypass it
    assert not Gpt2Steps.fits(plain)
    hook.remove()
    assert Gpt2Steps.fits(plain)
    assert not Gpt2Steps.fits(GPT2LMHeadModel(GPT2Config(**small, add_cross_attention=True)).eval())
    eager = GPT2LMHeadModel(GPT2Config(**small, attn_implementation="eager")).eval()
    assert not Gpt2Steps.fits(eager)  # its softmax is not sdpa's: tokens could differ
    assert not Gpt2Steps.fits(GPT2LMHeadModel(GPT2Config(**small)).to("meta").eval())  # not on a CPU
    llama = LlamaForCausalLM(
        LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, vocab_size=50)
    ).eval()
    assert not Gpt2Steps.fits(llama)


@pytest.mark.parametrize(
    "options", [{}, {"scale_attn_by_inverse_layer_idx": True}, {"n_head": 3}, {"scale_attn_weights": False}]
)
def test_gpt2_variants_step_to_forwards_logits(options: dict) -> None:
    """Attention scaled by layer, heads of 16 and 32 wide, unscaled attention: the model's own scale is used."""
    torch.manual_seed(0)
    config = dict(n_layer=3, n_embd=48, n_head=2, vocab_size=97) | options
    lm = GPT2LMHeadModel(GPT2Config(**config)).eval()
    prefix, tokens = torch.randn(2, 4, 48), torch.randint(0, 97, (2, 3))
    steps = Gpt2Steps(lm, batch=2, length=7)
    with torch.inference_mode():
        got = [steps.first(prefix)] + [steps.next(tokens[:, i]) for i in range(3)]
        whole = lm(inputs_embeds=torch.cat([prefix, lm.transformer.wte(tokens)], dim=1)).logits  # (2, 7, 97)
    expected = [whole[:, 3]] + [whole[:, 4 + i] for i in range(3)]
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(got, expected))
