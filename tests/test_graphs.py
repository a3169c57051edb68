"""graphs=True: greedy decoding with a static KV cache at fixed batch sizes (and, on a GPU, replayed as CUDA
graphs, with CLIP's image tower) gives the eager loop's tokens, photo for photo, over every held-out photo."""

from __future__ import annotations

import pytest
import torch

from clipchat.errors import InvalidConfig
from vision import DecodingOptions, decode, load_models
from vision.fast.graphs import BUCKETS, bucket

GPU = pytest.mark.skipif(
    not torch.cuda.is_available(),
    reason="CUDA graphs need a CUDA GPU; the CPU tests above check the same fixed-shape steps uncaptured",
)
BATCHES = (1, 3, 5, 16, 240)  # 3, 5 and 240 are padded (to 4, 8 and 256); 240 is every held-out photo at once


def tokens_by_batch(captioner, raw: torch.Tensor, batch: int, options: DecodingOptions) -> list[tuple[int, ...]]:
    return [
        caption.tokens
        for start in range(0, len(raw), batch)
        for [caption] in decode(captioner, raw[start : start + batch], options)
    ]


@pytest.fixture(scope="module")
def float32_models(world_dir, cache_dir):
    """The world's models in float32 (the session's `world_models` take `auto`: bfloat16 on some CPUs)."""
    return load_models(str(world_dir), device="cpu", dtype="float32", cache_dir=cache_dir)


@pytest.fixture(scope="module")
def heldout_raw(float32_models, heldout) -> torch.Tensor:
    return float32_models.encoder.embed_images([h.image for h in heldout], normalize=False)  # (240, D)


@pytest.mark.parametrize("method", ["beam", "sample", "guided"])
def test_graphs_with_another_method_are_refused(method: str) -> None:
    with pytest.raises(InvalidConfig, match="greedy"):
        DecodingOptions(method=method, graphs=True)


def test_graphs_are_refused_for_a_captioner_without_greedy_before_any_model_runs() -> None:
    class GuidedOnly:  # what decode reads before a model runs; touching a model fails the test
        methods = ("guided",)
        stop_ids = (0,)

        def refusal(self, method: str) -> str:
            return f"no {method}"

        def __getattr__(self, name: str):
            raise AssertionError(f"a model ran: {name}")

    with pytest.raises(InvalidConfig, match="graphs=True is for greedy decoding"):
        decode(GuidedOnly(), torch.zeros(2, 8), DecodingOptions(graphs=True))


def test_buckets() -> None:
    assert [bucket(n) for n in (1, 2, 3, 5, 9, 200, 256)] == [1, 2, 4, 8, 16, 256, 256]
    with pytest.raises(ValueError):
        bucket(BUCKETS[-1] + 1)


@pytest.mark.parametrize("batch", BATCHES)
def test_static_cache_gives_the_eager_tokens_on_every_heldout_photo(float32_models, heldout_raw, batch: int) -> None:
    captioner = float32_models.captioner
    eager = tokens_by_batch(captioner, heldout_raw, batch, DecodingOptions())
    static = tokens_by_batch(captioner, heldout_raw, batch, DecodingOptions(graphs=True))
    assert len(static) == len(heldout_raw)
    assert [i for i, (a, b) in enumerate(zip(eager, static)) if a != b] == []


def test_static_cache_scores_and_cut_off_captions_match_the_eager_ones(float32_models, heldout_raw) -> None:
    """The log-probabilities too, and captions that max_tokens cuts off before their full stop."""
    captioner = float32_models.captioner
    for max_tokens in (1, 2, 5):  # 1: no step after the prefix; 2: fewer steps than a warm-up would take
        options = DecodingOptions(max_tokens=max_tokens)
        eager = decode(captioner, heldout_raw[:5], options)
        static = decode(captioner, heldout_raw[:5], DecodingOptions(max_tokens=max_tokens, graphs=True))
        for [a], [b] in zip(eager, static):
            assert a.tokens == b.tokens and len(a.tokens) == max_tokens
            assert abs(a.log_prob - b.log_prob) < 1e-4
    eager = decode(captioner, heldout_raw[:16], DecodingOptions())
    static = decode(captioner, heldout_raw[:16], DecodingOptions(graphs=True))
    assert [round(a.log_prob, 4) for [a] in eager] == [round(b.log_prob, 4) for [b] in static]


def test_more_photos_than_the_largest_bucket_go_in_chunks(float32_models, heldout_raw) -> None:
    raw = torch.cat([heldout_raw, heldout_raw[:60]])  # 300: a full 256 bucket, then 44 padded to 64
    eager = tokens_by_batch(float32_models.captioner, raw, len(raw), DecodingOptions())
    assert tokens_by_batch(float32_models.captioner, raw, len(raw), DecodingOptions(graphs=True)) == eager


def test_describe_with_graphs_says_what_it_says_without(float32_models, heldout) -> None:
    """End to end: CLIP's tower at fixed batch sizes too, and each batch reuses the buffers of the last."""
    models, graphs = float32_models, DecodingOptions(graphs=True)
    pixels = models.encoder.preprocess_images([h.image for h in heldout[:40]])
    for batch in (3, 5):
        eager = [
            facts
            for start in range(0, len(pixels), batch)
            for facts in models.describe_pixels(pixels[start : start + batch])
        ]
        static = [
            facts
            for start in range(0, len(pixels), batch)
            for facts in models.describe_pixels(pixels[start : start + batch], graphs)
        ]
        assert [f.caption for f in static] == [f.caption for f in eager]
        assert [[t.label for t in f.tags] for f in static] == [[t.label for t in f.tags] for f in eager]
        for a, b in zip(eager, static):  # a padded batch multiplies in other blocks: the last bits may differ
            assert abs(a.embedding - b.embedding).max() < 1e-5


def test_the_auto_dtype_models_give_the_eager_tokens_too(world_models, heldout) -> None:
    """The session's models as `load_models` picks them here (bfloat16 GPT-2 on CPUs that have it)."""
    raw = world_models.encoder.embed_images([h.image for h in heldout], normalize=False)
    for batch in (5, 240):
        eager = tokens_by_batch(world_models.captioner, raw, batch, DecodingOptions())
        assert tokens_by_batch(world_models.captioner, raw, batch, DecodingOptions(graphs=True)) == eager


# --- on a GPU: the captured graphs, in the dtypes a GPU runs ---------------------------------------------------


@GPU
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_cuda_graphs_give_the_eager_tokens_on_every_heldout_photo(world_dir, cache_dir, heldout, dtype: str) -> None:
    from vision.fast.graphs import _DECODERS, _TOWERS

    models = load_models(str(world_dir), device="cuda", dtype=dtype, cache_dir=cache_dir)
    pixels = models.encoder.preprocess_images([h.image for h in heldout])  # (240, 3, H, W) on the GPU
    raw = models.encoder.embed_pixels(pixels, normalize=False)
    for batch in (1, 3, 5, 16, 64, 240):
        eager = tokens_by_batch(models.captioner, raw, batch, DecodingOptions())
        graphed = tokens_by_batch(models.captioner, raw, batch, DecodingOptions(graphs=True))
        assert [i for i, (a, b) in enumerate(zip(eager, graphed)) if a != b] == [], (dtype, batch)
    decoders = _DECODERS[models.captioner].decoders
    assert decoders and all(d.graph is not None for d in decoders.values())  # captured, not run eagerly
    for batch in (1, 5, 64):  # end to end, CLIP's tower captured as well
        eager = [
            f.caption
            for start in range(0, len(pixels), batch)
            for f in models.describe_pixels(pixels[start : start + batch])
        ]
        graphed = [
            f.caption
            for start in range(0, len(pixels), batch)
            for f in models.describe_pixels(pixels[start : start + batch], DecodingOptions(graphs=True))
        ]
        assert [i for i, (a, b) in enumerate(zip(eager, graphed)) if a != b] == [], (dtype, batch)
    towers = _TOWERS[models.encoder].towers
    assert towers and all(t.graph is not None for t in towers.values())
