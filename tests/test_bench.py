"""The benchmark's own claims: its baselines at their best do the same work, and its FLOPs are right.

Real-size architectures with random weights, as the benchmark runs them, on two photos.
"""

import pytest
import torch

from bench.flops import count_flops, vit_flops
from bench.pipelines import build_models, clipcap_batched, clipcap_reference, coca, coca_cached, jpeg_photos
from bench.tokens import caption_tokens, compare_tokens, same_weights
from vision.fast.packed_linear import pack_linears, packing_available


@pytest.fixture(scope="module")
def photos():
    # Under 896 px, draft decoding (the best pipelines') and full decoding (as shipped) give the same pixels, so
    # these compare the models' arithmetic alone: random weights' flat scores flip on resize noise
    return jpeg_photos(2, seed=3, size=(640, 480))


@pytest.fixture(scope="module")
def clipchat_models():
    """clipchat's float32 models as the benchmark builds them, built once: both tests below only read them."""
    return build_models(tags=False)


def _tokens(pipeline, photos):
    return pipeline.process([pipeline.prepare(data) for data in photos])


def test_flops_count_attention_as_the_hand_count_does():
    import open_clip
    from torch.utils.flop_counter import FlopCounterMode

    model = open_clip.create_model("ViT-B-32-quickgelu").eval().requires_grad_(False)
    pixels = torch.randn(1, 3, 224, 224)
    with torch.inference_mode():
        counted = count_flops(lambda: model.encode_image(pixels))
        plain = FlopCounterMode(display=False)
        with plain:
            model.encode_image(pixels)
    assert counted == pytest.approx(vit_flops(model.visual), rel=1e-6)
    # what the benchmark reported before: the fused attention path went uncounted
    assert plain.get_total_flops() < 0.8 * counted
    if packing_available():  # as clipchat loads it on a CPU: oneDNN kernels, counted as the same work
        pack_linears(model)
        with torch.inference_mode():
            assert count_flops(lambda: model.encode_image(pixels)) == pytest.approx(counted, rel=1e-6)


def test_cached_coca_captions_as_coca_does(photos):
    assert _tokens(coca_cached(), photos) == _tokens(coca(), photos)


def test_batched_clipcap_and_clipchat_caption_as_clipcap_reference_does(photos, clipchat_models):
    reference = _tokens(clipcap_reference(), photos)
    assert _tokens(clipcap_batched(), photos) == reference
    assert caption_tokens(clipchat_models, photos) == reference  # same seed, same weights: the same captions


def test_bfloat16_check_compares_the_same_weights(clipchat_models):
    full = clipchat_models
    half = build_models(dtype=torch.bfloat16, clip_dtype=torch.bfloat16, tags=False)
    assert same_weights(full, half)  # linearized GPT-2 included: its state dict keeps Conv1D's layout
    with torch.no_grad():
        half.captioner.lm.lm_head.weight[0, 0] += 1
    assert not same_weights(full, half)


def test_token_comparison_counts_changes():
    figures = compare_tokens([[1, 2, 3], [4, 5, 6]], [[1, 2, 3], [4, 9, 6, 7]])
    assert figures["captions_changed"] == 0.5
    assert figures["tokens_changed"] == pytest.approx(2 / 7)
    assert figures["median_first_change"] == 1


@pytest.fixture
def two_threads():
    """Two intra-op threads: one (as in a pytest-xdist worker) starts no OpenMP team to catch."""
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(threads)


def test_a_prepare_that_would_start_an_openmp_team_is_refused(photos, two_threads):
    """prepare runs beside the model thread: a parallel PyTorch op there slows every pipeline measured after it."""
    from bench.harness import check_prepare_keeps_off_openmp
    from bench.pipelines import Pipeline, decode

    def tensor_work(data: bytes) -> torch.Tensor:
        return torch.ones(4_000_000) * 2  # big enough to run in parallel

    with pytest.raises(RuntimeError, match="OpenMP team"):
        check_prepare_keeps_off_openmp(Pipeline("tensors", "t", "t", 1, tensor_work, list), photos[0])
    check_prepare_keeps_off_openmp(Pipeline("pillow", "p", "p", 1, decode, list), photos[0])
