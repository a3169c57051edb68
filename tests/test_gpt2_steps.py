"""Greedy captions through vision.gpt2_steps (GPT-2's modules called directly over a KV buffer) are the
captions its own `forward` gives, token for token, on every held-out photo, in float32 and bfloat16."""

from __future__ import annotations

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

from vision import DecodingOptions, decode, load_models
from vision.gpt2_steps import Gpt2Steps


@pytest.fixture(scope="module", params=["float32", "bfloat16"])
def models_and_raw(request, world_dir, cache_dir, heldout):
    models = load_models(str(world_dir), device="cpu", dtype=request.param, cache_dir=cache_dir / request.param)
    return models, models.encoder.embed_images([h.image for h in heldout], normalize=False)  # (240, D)


def captions(captioner, raw: torch.Tensor, batch: int, options: DecodingOptions) -> list:
    return [caption for start in range(0, len(raw), batch)
            for [caption] in decode(captioner, raw[start:start + batch], options)]


def through_forward(monkeypatch, captioner, raw, batch, options) -> list:
    with monkeypatch.context() as patch:
        patch.setattr(Gpt2Steps, "fits", staticmethod(lambda lm: False))
        return captions(captioner, raw, batch, options)


@pytest.mark.parametrize("batch", [1, 16, 240])
def test_the_lean_steps_give_forwards_tokens_and_scores(models_and_raw, monkeypatch, batch: int) -> None:
    models, raw = models_and_raw
    assert Gpt2Steps.fits(models.captioner.lm)  # else both sides below would run `forward`
    options = DecodingOptions()
    expected = through_forward(monkeypatch, models.captioner, raw, batch, options)
    got = captions(models.captioner, raw, batch, options)
    assert len(got) == len(raw)
    assert [i for i, (a, b) in enumerate(zip(expected, got)) if a.tokens != b.tokens] == []
    assert max(abs(a.log_prob - b.log_prob) for a, b in zip(expected, got)) < 1e-3


def test_captions_cut_off_by_max_tokens_match_too(models_and_raw, monkeypatch) -> None:
    models, raw = models_and_raw
    for max_tokens in (1, 2, 5):  # 1: the prefix pass alone
        options = DecodingOptions(max_tokens=max_tokens)
        expected = through_forward(monkeypatch, models.captioner, raw[:8], 8, options)
        got = captions(models.captioner, raw[:8], 8, options)
        assert [c.tokens for c in got] == [c.tokens for c in expected]
        assert all(len(c.tokens) == max_tokens for c in got)


def test_only_a_plain_gpt2_in_inference_on_a_cpu_takes_the_lean_steps() -> None:
    small = dict(n_layer=1, n_embd=32, n_head=2, vocab_size=50)
    assert Gpt2Steps.fits(GPT2LMHeadModel(GPT2Config(**small)).eval())
    assert not Gpt2Steps.fits(GPT2LMHeadModel(GPT2Config(**small)).train())
    assert not Gpt2Steps.fits(GPT2LMHeadModel(GPT2Config(**small, scale_attn_by_inverse_layer_idx=True)).eval())
    assert not Gpt2Steps.fits(GPT2LMHeadModel(GPT2Config(**small, add_cross_attention=True)).eval())
    eager = GPT2LMHeadModel(GPT2Config(**small, attn_implementation="eager")).eval()
    assert not Gpt2Steps.fits(eager)  # its softmax is not sdpa's: tokens could differ
    llama = LlamaForCausalLM(LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                         num_attention_heads=2, vocab_size=50)).eval()
    assert not Gpt2Steps.fits(llama)
