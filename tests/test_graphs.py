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


def test_more_photos_than_the_largest_bucket_go_in_chunks(float32_models, heldout_raw) -> None:
    from vision.fast.graphs import _BUCKET_STEPS

    raw = torch.cat([heldout_raw, heldout_raw[:60]])  # 300: a full 256 bucket, then 44 padded to 64
    eager = tokens_by_batch(float32_models.captioner, raw, len(raw), DecodingOptions())
    assert tokens_by_batch(float32_models.captioner, raw, len(raw), DecodingOptions(graphs=True)) == eager
    kept = {(size, chunk) for size, _, chunk in _BUCKET_STEPS[float32_models.captioner.lm]}
    assert {(256, 0), (64, 1)} <= kept  # each chunk its own bucket and cache


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


# --- on a GPU: the captured graphs, in the dtypes a GPU runs ---------------------------------------------------


@GPU
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_cuda_graphs_describe_as_the_eager_path_does(world_dir, cache_dir, heldout, dtype: str) -> None:
    """End to end, CLIP's tower and every greedy step captured once and then replayed."""
    from vision.fast.graphs import _BUCKET_STEPS, _TOWERS

    models = load_models(str(world_dir), device="cuda", dtype=dtype, cache_dir=cache_dir)
    pixels = models.encoder.preprocess_images([h.image for h in heldout])  # (240, 3, H, W) on the GPU
    for batch in (1, 5, 64):
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
    steps = _BUCKET_STEPS[models.captioner.lm]
    assert steps and all(step.graph is not None for step in steps.values())  # captured, not run eagerly
    towers = _TOWERS[models.encoder].towers
    assert towers and all(t.graph is not None for t in towers.values())
