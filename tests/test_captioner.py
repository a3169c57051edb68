"""Prefix captions on held-out photos, the KV-cached decoder against ClipCap's loop, and ClipCap checkpoints."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from bench.reference import reference_greedy
from tests.conftest import attribute_accuracy, by_split
from vision import DecodingOptions, decode, load_models
from vision.catalog.devices import cpu_has_fast_bf16
from vision.catalog.model_sets import Ref
from vision.models.captioner import PrefixCaptioner, load_clipcap_checkpoint
from vision.models.language_model import load_language_model
from vision.models.mapper import MapperConfig


def test_prefix_captions_name_every_attribute(world_models, heldout, figure) -> None:
    captions = {h.path: d.caption for h, d in zip(heldout, world_models.describe([h.image for h in heldout]))}
    exact = by_split(heldout, lambda h: captions[h.path] == h.scene.caption)
    attributes = by_split(heldout, lambda h: attribute_accuracy(captions[h.path], h.scene))
    for split in exact:
        figure(f"prefix captions exactly right, {split} combinations", exact[split])
        figure(f"prefix captions, attributes right, {split} combinations", attributes[split])
    assert exact["seen"] >= 0.90 and attributes["unseen"] >= 0.90, (exact, attributes)


def test_cached_greedy_decoding_matches_the_clipcap_reference_loop(world_models, heldout) -> None:
    raw = world_models.encoder.embed_images([h.image for h in heldout[:24]], normalize=False)
    batched = decode(world_models.captioner, raw, DecodingOptions(max_tokens=20))
    for vector, [caption] in zip(raw, batched):
        assert list(caption.tokens) == reference_greedy(world_models.captioner, vector, max_tokens=20)


def test_a_greedy_captions_score_is_the_language_models_own(world_models, heldout) -> None:
    """The score that ranks and reports a caption: its tokens' mean log-probability under teacher forcing."""
    raw = world_models.encoder.embed_images([h.image for h in heldout[:8]], normalize=False)
    for vector, [caption] in zip(raw, decode(world_models.captioner, raw)):
        tokens = torch.tensor([caption.tokens])
        with torch.inference_mode():
            logits = world_models.captioner(vector[None], tokens, torch.ones_like(tokens))  # (1, T, vocab)
        expected = logits.float().log_softmax(-1).gather(2, tokens[..., None]).mean()
        assert abs(caption.log_prob - float(expected)) < 1e-4


def test_a_batch_captions_each_image_as_if_alone(world_models, heldout) -> None:
    raw = world_models.encoder.embed_images([h.image for h in heldout[:6]], normalize=False)
    together = [c[0].text for c in decode(world_models.captioner, raw)]
    alone = [decode(world_models.captioner, raw[i : i + 1])[0][0].text for i in range(len(raw))]
    assert together == alone


def test_beam_search_and_sampling_return_ranked_sentences(world_models, heldout) -> None:
    raw = world_models.encoder.embed_images([h.image for h in heldout[:8]], normalize=False)
    beams = decode(world_models.captioner, raw, DecodingOptions(method="beam", beam_size=4, num_candidates=3))
    torch.manual_seed(0)  # sampling draws from the global generator, which earlier tests have advanced
    samples = decode(world_models.captioner, raw, DecodingOptions(method="sample", num_candidates=3, top_p=0.9))
    for _held, beam, sample in zip(heldout, beams, samples):
        assert len(beam) == 3 and len({c.text for c in beam}) == 3  # distinct hypotheses
        for candidates in (beam, sample):
            ended = [c.text.endswith(".") for c in candidates]
            assert ended[0] and ended == sorted(ended, reverse=True)  # finished sentences first
            finished = [c.log_prob for c, done in zip(candidates, ended) if done]
            assert finished == sorted(finished, reverse=True)
    beam_right = sum(b[0].text == h.scene.caption for b, h in zip(beams, heldout))
    assert beam_right >= 7


def test_reranking_candidates_keeps_captions_right(world_models, heldout) -> None:
    options = DecodingOptions(method="beam", beam_size=4, num_candidates=4)
    descriptions = world_models.describe([h.image for h in heldout[:40]], options)
    right = sum(d.caption == h.scene.caption for d, h in zip(descriptions, heldout[:40]))
    raw = world_models.encoder.embed_images([h.image for h in heldout[:4]], normalize=False)
    assert right >= 36 and all(len(candidates) == 4 for candidates in world_models.caption(raw, options))


def clipcap_state(captioner: PrefixCaptioner, with_gpt: bool = True) -> dict[str, torch.Tensor]:
    """The captioner's weights in ClipCap's published key layout, legacy GPT-2 buffers included."""
    state = {f"clip_project.{k}": v.clone() for k, v in captioner.mapper.state_dict().items()}
    if with_gpt:
        state |= {f"gpt.{k}": v.clone() for k, v in captioner.lm.state_dict().items()}
        positions = captioner.lm.config.n_positions
        for layer in range(captioner.lm.config.n_layer):
            state[f"gpt.transformer.h.{layer}.attn.bias"] = torch.tril(
                torch.ones(positions, positions, dtype=torch.uint8)
            ).view(1, 1, positions, positions)
            state[f"gpt.transformer.h.{layer}.attn.masked_bias"] = torch.tensor(-1e4)
    return state


def test_a_clipcap_checkpoint_loads_and_captions(world_models, world_dir: Path, heldout, tmp_path: Path) -> None:
    captioner = world_models.captioner
    state = clipcap_state(captioner)
    assert "clip_project.model.0.weight" in state and "clip_project.model.2.weight" in state
    assert "gpt.transformer.h.0.attn.masked_bias" in state and "gpt.lm_head.weight" in state
    path = tmp_path / "coco_weights.pt"
    torch.save(state, path)

    loaded = load_clipcap_checkpoint(
        Ref("local-dir", str(path)), Ref("local-dir", str(world_dir / "gpt2")), torch.device("cpu"), torch.float32
    )
    assert loaded.config.kind == "mlp" and loaded.config.prefix_length == captioner.config.prefix_length
    raw = world_models.encoder.embed_images([h.image for h in heldout[:30]], normalize=False)
    # ClipCap feeds vectors as given; the world's captioner normalises them itself, so give ClipCap unit vectors.
    theirs = [c[0].text for c in decode(loaded, F.normalize(raw, dim=-1))]
    ours = [c[0].text for c in decode(captioner, raw)]
    assert theirs == ours
    assert sum(t == h.scene.caption for t, h in zip(theirs, heldout)) >= 27


def test_a_clipcap_checkpoint_is_a_model_set_choice(
    world_dir: Path, world_models, heldout, tmp_path: Path, cache_dir
) -> None:
    path = tmp_path / "coco_weights.pt"
    torch.save(clipcap_state(world_models.captioner), path)
    (tmp_path / "clipchat.json").write_text(
        f'{{"clip": "local-dir:{world_dir / "clip"}", "language_model": "local-dir:{world_dir / "gpt2"}", '
        f'"captioner": "clipcap:coco_weights.pt", "vocabulary": "{world_dir / "vocab.txt"}"}}'
    )
    models = load_models(str(tmp_path), device="cpu", cache_dir=cache_dir)
    assert models.captioner.source == f"clipcap:local-dir:{path}"
    assert "guided" not in models.captioner.methods and models.describe([heldout[0].image])[0].caption.endswith(".")


def test_clipcap_transformer_mapper_layout_loads(world_dir: Path, tmp_path: Path) -> None:
    lm, tokenizer = load_language_model(Ref("local-dir", str(world_dir / "gpt2")), torch.device("cpu"), torch.float32)
    config = MapperConfig(
        clip_dim=64, lm_dim=lm.config.n_embd, prefix_length=6, kind="transformer", clip_length=5, num_layers=2
    )
    original = PrefixCaptioner(config, lm, tokenizer)
    state = clipcap_state(original, with_gpt=False)  # ClipCap's frozen-GPT-2 variant ships the mapper only
    assert {
        "clip_project.linear.weight",
        "clip_project.prefix_const",
        "clip_project.transformer.layers.1.attn.to_keys_values.weight",
        "clip_project.transformer.layers.0.mlp.fc2.bias",
    } <= set(state)
    torch.save(state, tmp_path / "transformer_weights.pt")
    loaded = load_clipcap_checkpoint(
        Ref("local-dir", str(tmp_path / "transformer_weights.pt")),
        Ref("local-dir", str(world_dir / "gpt2")),
        torch.device("cpu"),
        torch.float32,
    )
    assert (loaded.config.kind, loaded.config.num_layers, loaded.config.clip_length) == ("transformer", 2, 5)
    vector = torch.randn(3, 64)
    assert torch.allclose(loaded.prefix(vector), original.prefix(vector))


def test_a_bfloat16_language_model_gives_the_same_captions_as_float32(
    world_dir: Path, cache_dir: Path, heldout
) -> None:
    """The condition for `auto` running GPT-2 in bfloat16 on CPUs with native bf16, by the project's accuracy rule
    (issue 32): the held-out captions within 1 point of float32's. On a Zen 5 (AVX-512 BF16) one near-tie of 240
    turned ("square" for "cross"), which the earlier rule, no caption may change, refused on every world built."""
    images = [h.image for h in heldout]
    reference = load_models(str(world_dir), device="cpu", dtype="float32", cache_dir=cache_dir / "float32")
    half = load_models(str(world_dir), device="cpu", dtype="bfloat16", cache_dir=cache_dir / "bfloat16")
    raw = reference.encoder.embed_images(images, normalize=False)
    as_float32 = [c[0].text for c in reference.caption(raw)]
    as_bfloat16 = [c[0].text for c in half.caption(raw)]
    changed = [(a, b) for a, b in zip(as_bfloat16, as_float32) if a != b]
    assert len(changed) <= len(images) // 100, changed

    def exact(captions: list[str]) -> float:
        return sum(c == f"{h.scene.caption}" for c, h in zip(captions, heldout)) / len(heldout)

    assert exact(as_bfloat16) >= exact(as_float32) - 0.01
    auto = load_models(str(world_dir), device="cpu", dtype="auto", cache_dir=cache_dir / "auto")
    assert auto.encoder.dtype == (torch.bfloat16 if cpu_has_fast_bf16() else torch.float32)  # CLIP too
    automatic = [d.caption for d in auto.describe(images)]
    assert sum(a != b for a, b in zip(automatic, [d.caption for d in reference.describe(images)])) <= len(images) // 100


def test_a_linearized_language_model_keeps_gpt2s_checkpoint_layout(world_dir: Path) -> None:
    from vision.models.language_model import linearize

    lm, _ = load_language_model(Ref.parse(f"local-dir:{world_dir / 'gpt2'}"), torch.device("cpu"), torch.float32)
    before = {k: v.clone() for k, v in lm.state_dict().items()}
    tokens = torch.tensor([[1, 2, 3, 4]])
    with torch.inference_mode():
        expected = lm(input_ids=tokens).logits
    assert linearize(lm) > 0
    with torch.inference_mode():
        assert torch.allclose(lm(input_ids=tokens).logits, expected, atol=1e-5)
    after = lm.state_dict()
    assert after.keys() == before.keys() and all(torch.equal(after[k], before[k]) for k in before)
    lm.load_state_dict(before)  # an ordinary GPT-2 checkpoint still loads
