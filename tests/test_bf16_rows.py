"""vision.fast.bf16_rows: GPT-2's few-row bfloat16 products at memory speed, built on first use, and oneDNN where not."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from bench.flops import count_flops
from vision.fast import bf16_rows
from vision.fast.gpt2_steps import Gpt2Steps
from vision.fast.packed_linear import PackedLinear, pack_linears, packing_available
from vision.models.language_model import linearize

needs_kernel = pytest.mark.skipif(
    not (bf16_rows.cpu_supports() and packing_available()),
    reason="the kernel needs AVX-512 BF16 (and packed linears beside it)",
)


@pytest.fixture(scope="module")
def kernel(cache_dir: Path) -> None:
    assert bf16_rows.load(cache_dir), "the kernel should build wherever the CPU has AVX-512 BF16 and g++ is here"


@needs_kernel
@pytest.mark.parametrize("rows", [1, 2, 3])
@pytest.mark.parametrize("inputs, outputs", [(768, 2304), (770, 1001), (33, 64), (16, 5)])  # whole and partial 32s
@pytest.mark.parametrize("bias", [True, False])
def test_few_rows_are_the_exact_product_rounded_once_to_bfloat16(kernel, rows, inputs, outputs, bias) -> None:
    generator = torch.Generator().manual_seed(rows * inputs + outputs)
    x = torch.randn(rows, inputs, generator=generator).bfloat16()
    weight = torch.randn(outputs, inputs, generator=generator).bfloat16()
    b = torch.randn(outputs, generator=generator).bfloat16() if bias else None
    got = bf16_rows.linear(x, weight, b).double()
    exact = torch.nn.functional.linear(x.double(), weight.double(), b.double() if bias else None)
    # rounding to bfloat16 moves a value by at most half its last place (2^-9 of it); summing K terms in float32
    # adds at most K float32 roundings of the terms' sizes
    terms = x.double().abs() @ weight.double().abs().T + (b.double().abs() if bias else 0)
    assert got.shape == (rows, outputs)
    assert ((got - exact).abs() <= exact.abs() * 2**-8 + terms * (inputs + 1) * 2**-24).all()


@needs_kernel
def test_a_packed_bfloat16_linear_takes_the_kernel_for_few_rows_and_onednn_for_more(kernel) -> None:
    torch.manual_seed(0)
    linear = torch.nn.Linear(96, 200).bfloat16().requires_grad_(False)
    packed = PackedLinear(linear, few_rows=True)
    assert packed.few_rows and not PackedLinear(torch.nn.Linear(96, 200), few_rows=True).few_rows  # bfloat16 only
    for shape in [(1, 96), (3, 96), (1, 1, 96), (4, 96), (2, 8, 96)]:
        x = torch.randn(*shape).bfloat16()
        with torch.profiler.profile() as profile:
            out = packed(x)
        ran = {event.name for event in profile.events()}
        few = x.numel() <= bf16_rows.MAX_ROWS * 96
        assert ("clipchat::bf16_rows_linear" in ran) == few and ("mkldnn::_linear_pointwise" in ran) != few
        assert out.shape == (*shape[:-1], 200)
        assert torch.allclose(out.float(), linear(x).float(), rtol=2**-7, atol=1e-2)


def small_packed_gpt2(**options) -> GPT2LMHeadModel:
    """A bfloat16 GPT-2 as load_models leaves one on a CPU with AVX-512 BF16: linears packed, few rows on the kernel."""
    torch.manual_seed(0)
    lm = GPT2LMHeadModel(GPT2Config(**dict(n_layer=2, n_embd=96, n_head=4, vocab_size=300) | options))
    for parameter in lm.parameters():  # GPT-2 starts with zero biases and unit norms: a swapped one would not show
        parameter.data.normal_(0, 0.2)
    lm = lm.eval().bfloat16().requires_grad_(False)
    linearize(lm)
    pack_linears(lm, few_rows=True)
    return lm


@needs_kernel
@pytest.mark.parametrize(
    "options",
    [
        {},
        {"scale_attn_by_inverse_layer_idx": True},
        {"n_head": 3},
        {"scale_attn_weights": False},
        {"layer_norm_epsilon": 1e-2},
    ],
)
def test_a_gpt2_step_in_one_call_gives_the_python_steps_logits_bit_for_bit(kernel, options: dict) -> None:
    lm = small_packed_gpt2(**options)
    for batch in (1, 2, 3):
        prefix, tokens = torch.randn(batch, 4, 96).bfloat16(), torch.randint(0, 300, (5, batch))
        fused, plain = Gpt2Steps(lm, batch, length=9), Gpt2Steps(lm, batch, length=9)
        plain.fused = None
        with torch.inference_mode(), torch.profiler.profile() as profile:
            got = [fused.first(prefix)] + [fused.next(token) for token in tokens]
        expected = [plain.first(prefix)] + [plain.next(token) for token in tokens]
        assert sum(event.name == "clipchat::gpt2_step" for event in profile.events()) == len(tokens)
        assert all(torch.equal(a, b) for a, b in zip(got, expected))
    assert Gpt2Steps(lm, 4, length=9).fused is None  # four rows are oneDNN's, step by step
    gelu = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=50, activation_function="gelu"))
    gelu = gelu.eval().bfloat16()
    linearize(gelu)
    pack_linears(gelu, few_rows=True)
    assert Gpt2Steps(gelu, 1, length=4).fused is None  # the C++ repeats gelu_new's operations, no other's


@needs_kernel
def test_the_benchmarks_flop_count_sees_every_step(kernel) -> None:
    """The counter's hooks on every module send the steps through Python, where it sees each linear and attention
    (counted as one op it knows nothing of, a step would count as no work)."""
    lm = small_packed_gpt2()
    prefix, tokens = torch.randn(2, 4, 96).bfloat16(), torch.randint(0, 300, (5, 2))

    def caption(fused: bool) -> None:
        steps = Gpt2Steps(lm, 2, length=9)
        if not fused:
            steps.fused = None
        steps.first(prefix)
        for token in tokens:
            steps.next(token)

    assert Gpt2Steps(lm, 2, length=9).fused is not None  # uncounted, a step is one call
    with torch.inference_mode():
        counted, step_by_step = count_flops(lambda: caption(True)), count_flops(lambda: caption(False))
    assert counted == step_by_step and step_by_step > 2 * 5 * 2 * 96 * 300


def test_without_a_compiler_the_log_and_doctor_say_why_and_the_linears_stay_on_onednn(tmp_path) -> None:
    """In a process of its own: `load` answers once per process."""
    script = (
        "import logging, sys; from pathlib import Path; logging.basicConfig(level=logging.INFO)\n"
        "from bot.ops.doctor import check_device\n"
        "from vision.fast import bf16_rows\n"
        "bf16_rows.prebuilt_dir = lambda: Path(sys.argv[1])  # none built there either\n"
        "from vision.catalog.settings import VisionSettings\n"
        "check = check_device(VisionSettings())\n"
        "print(check.status, '|', check.detail, '|', check.fix)\n"
        "print('loaded', bf16_rows.load(VisionSettings().cache_dir))\n"
    )
    env = {
        **os.environ,
        "CXX": str(tmp_path / "no-such-compiler"),
        "XDG_CACHE_HOME": str(tmp_path / "xdg"),
        "CLIPCHAT_DEVICE": "cpu",
        "CLIPCHAT_DTYPE": "bfloat16",
        "CLIPCHAT_CACHE_DIR": str(tmp_path / "cache"),
    }
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "prebuilt")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        cwd=Path(__file__).parents[1],
    )
    assert "loaded False" in done.stdout, done.stderr
    if bf16_rows.cpu_supports():
        assert "bfloat16 one-row kernel unavailable" in done.stderr and "no-such-compiler" in done.stderr
        assert done.stdout.startswith("warn |") and "no-such-compiler" in done.stdout and "install g++" in done.stdout
    else:  # nothing to build on this CPU, and nothing to warn about
        assert done.stdout.startswith("ok |")


@needs_kernel
def test_a_kernel_built_ahead_loads_where_nothing_can_be_built(tmp_path) -> None:
    """As in the Docker image: `python -m vision.fast.bf16_rows DIR` while the image is built, then a bot with no
    compiler that loads it from there as it is (each in a process of its own: `load` answers once per process)."""
    root, prebuilt = Path(__file__).parents[1], tmp_path / "prebuilt"
    built = subprocess.run(
        [sys.executable, "-m", "vision.fast.bf16_rows", str(prebuilt)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=root,
    )
    assert built.returncode == 0 and str(prebuilt) in built.stdout, built.stderr
    script = (
        "import logging, sys; from pathlib import Path; logging.basicConfig(level=logging.INFO)\n"
        "from vision.fast import bf16_rows\n"
        "bf16_rows.prebuilt_dir = lambda: Path(sys.argv[1])\n"
        "print('loaded', bf16_rows.load(Path(sys.argv[2])))\n"
    )
    env = {**os.environ, "CXX": str(tmp_path / "no-such-compiler"), "XDG_CACHE_HOME": str(tmp_path / "xdg")}
    done = subprocess.run(
        [sys.executable, "-c", script, str(prebuilt), str(tmp_path / "cache")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        cwd=root,
    )
    assert "loaded True" in done.stdout and f"loaded from {prebuilt}" in done.stderr, done.stderr
    assert not (tmp_path / "cache").exists()  # nothing was built


@pytest.mark.skipif(shutil.which("g++") is None or platform.machine() != "x86_64", reason="needs g++ on x86-64")
def test_a_compiler_error_is_reported_with_the_compilers_words(tmp_path, monkeypatch) -> None:
    broken = tmp_path / "bf16_rows.cpp"
    broken.write_text("this is not C++\n")
    monkeypatch.setattr(bf16_rows, "SOURCE", broken)
    with pytest.raises(OSError, match=r"\S*bf16_rows\.cpp:1"):
        bf16_rows.build(tmp_path / "kernels")
    assert not list((tmp_path / "kernels").rglob("*.so"))  # no library left to load
