"""The benchmark's own claims: its baselines at their best do the same work, and its FLOPs are right.

Real-size architectures with random weights, as the benchmark runs them, on two photos.
"""

import pytest
import torch

from bench.flops import count_flops, vit_flops
from bench.pipelines import _coca, build_models, clipcap_batched, clipcap_reference, coca, coca_cached, jpeg_photos
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
    built = _coca("cpu", torch.float32)  # one CoCa for both: neither writes to it, and each build takes seconds
    assert _tokens(coca_cached(built=built), photos) == _tokens(coca(built=built), photos)


def test_batched_clipcap_and_clipchat_caption_as_clipcap_reference_does(photos, clipchat_models):
    clipcap = build_models(as_clipchat_loads=False, tags=False)  # ClipCap's own, read by both of its pipelines
    reference = _tokens(clipcap_reference(models=clipcap), photos)
    assert _tokens(clipcap_batched(models=clipcap), photos) == reference
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


def test_the_report_names_the_machine_its_libraries_and_the_speed_paths_chosen() -> None:
    """A reader of bench.json or of the printed report can tell which CPU gave the figures (its model string,
    not `x86_64`), with which ISA features and libraries, and which speed paths ran there."""
    import json
    import platform
    from pathlib import Path

    import transformers

    from bench.captioning import machine, report
    from vision.fast.calibration import SpeedPath, SpeedPaths, SpeedPathsMode, Verdict, Why

    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    named = [line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name")]
    flags = next((line.split(":", 1)[1].split() for line in cpuinfo.splitlines() if line.startswith("flags")), [])
    found = machine({"float32": 3.0e11})
    assert found["cpu"] == (" ".join(named[0].split()) if named else platform.machine())
    expected_isa = [f for f in ("avx2", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16") if f in flags]
    assert [f for f in found["isa"] if f in expected_isa] == expected_isa
    assert found["libraries"]["torch"] == torch.__version__
    assert found["libraries"]["transformers"] == transformers.__version__
    paths = SpeedPaths(
        SpeedPathsMode.AUTO,
        (
            Verdict(SpeedPath.CLIP_PACKED, False, Why.MEASURED, (("lone", 41.0, 47.0),)),
            Verdict(SpeedPath.FEW_ROWS, False, Why.UNAVAILABLE),
        ),
        seconds=2.5,
    )
    results = {
        "machine": found,
        "settings": {"clients": 16, "repeats": 1, "photos": 16, "tokens": 20, "max_wait": 0.005},
        "sections": {"float32": {"rows": {}, "ratios": {}, "speed_paths": {"clipchat": paths.as_dict()}}},
    }
    results = json.loads(json.dumps(results))  # what bench.json holds
    lines: list[str] = []
    report(results, lines.append)
    printed = "\n".join(lines)
    assert found["cpu"] in lines[1] and all(flag in lines[1] for flag in expected_isa)
    assert f"torch {torch.__version__}" in printed and f"transformers {transformers.__version__}" in printed
    assert "clipchat's speed paths (auto, measured in 2.5 s):" in printed
    assert "packed linears for CLIP: off (plain 41 ms vs packed 47 ms on this CPU)" in printed
    assert "the few-row bfloat16 kernel: off (not available on this CPU, build or model)" in printed
