"""Every greedy step gives the plain step's captions: token for token on the world's 240 held-out photos (the
fixed-shape steps in 16-bit floats bar a tie, where two tokens' logits round to the same value), and logits bit for bit where a step
repeats another's arithmetic exactly (the one-call bfloat16 step repeats the lean Python step's). Whichever speed
path drifts from transformers' `forward`, it fails here.

A speed path whose private APIs are not known to work on the installed release is left out, with one log line,
and the plain path gives the same captions."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import pytest
import torch
from packaging.specifiers import SpecifierSet

from clipchat.errors import InvalidConfig
from vision import DecodingOptions, decode, load_models
from vision.decoding.steps import ForwardStep
from vision.fast import bf16_rows, choose_step, versions
from vision.fast.gpt2_steps import Gpt2Steps
from vision.fast.graphs import StaticStep
from vision.fast.packed_linear import PackedLinear, packing_available

NEEDS_KERNEL = pytest.mark.skipif(
    not (bf16_rows.cpu_supports() and packing_available()),
    reason="the one-call step runs on the few-row kernel, which needs AVX-512 BF16 (and packed linears beside it)",
)
NEEDS_CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a CUDA GPU")
CUT_OFF = (1, 2, 5)
# How far a caption's mean log-probability may move with its logits' rounding: in bfloat16 and float16 a logit of
# GPT-2's size is rounded by a few hundredths (the fixed-shape steps round differently), in float32 by millionths
LOG_PROB_TOLERANCE = {
    torch.float32: 1e-4,
    torch.float16: 0.05,
    torch.bfloat16: 0.05,
}  # max_tokens: 1, the prefix pass alone; 2, fewer steps than a CUDA graph's warm-up takes


def lean(lm, batch: int, length: int, *, graphs: bool = False) -> Gpt2Steps:
    """GPT-2's modules called from Python, never the one-call C++ step."""
    steps = Gpt2Steps(lm, batch, length)
    steps.fused = None
    return steps


def one_call(lm, batch: int, length: int, *, graphs: bool = False) -> Gpt2Steps:
    steps = Gpt2Steps(lm, batch, length)
    assert steps.fused is not None, "the one-call step does not apply to this model and batch"
    return steps


def static(lm, batch: int, length: int, *, graphs: bool = False) -> StaticStep:
    return StaticStep(lm, batch, length)


CHOOSERS = {"lean": lean, "one-call": one_call, "static": static}
KINDS = {"lean": Gpt2Steps, "one-call": Gpt2Steps, "static": StaticStep}


@dataclass(frozen=True)
class Case:
    step: str
    device: str
    dtype: str
    batches: tuple[int, ...]
    exact: str | None = None  # the step whose logits this one's equal bit for bit
    # Whether a caption may part from the plain step's on a tie (two logits one rounding apart): only the
    # fixed-shape steps in 16-bit floats, which attend over a masked static cache and so round differently.
    # Every other step gives the plain step's tokens on every photo.
    ties: bool = False

    def __str__(self) -> str:
        return f"{self.step}-{self.device}-{self.dtype}"


CASES = [
    pytest.param(Case("lean", "cpu", "float32", (1, 16, 240)), id="lean-float32"),
    pytest.param(Case("lean", "cpu", "bfloat16", (1, 16, 240)), id="lean-bfloat16"),
    pytest.param(Case("one-call", "cpu", "bfloat16", (1, 3), exact="lean"), id="one-call-bfloat16", marks=NEEDS_KERNEL),
    # 5 and 240 are padded (to 8 and 256); 240 is every held-out photo at once
    pytest.param(Case("static", "cpu", "float32", (5, 240)), id="static-float32"),
    pytest.param(Case("static", "cpu", "bfloat16", (5, 240), ties=True), id="static-bfloat16"),
    pytest.param(
        Case("static", "cuda", "float16", (1, 3, 5, 16, 64, 240), ties=True), id="cuda-graphs-float16", marks=NEEDS_CUDA
    ),
    pytest.param(
        Case("static", "cuda", "bfloat16", (1, 3, 5, 16, 64, 240), ties=True),
        id="cuda-graphs-bfloat16",
        marks=NEEDS_CUDA,
    ),
]


class Recorded:
    """A step whose every logits are kept (copied: a step may hand out its own buffer)."""

    def __init__(self, step) -> None:
        self.step, self.check_every, self.logits = step, step.check_every, []

    def first(self, prefix: torch.Tensor) -> torch.Tensor:
        return self._keep(self.step.first(prefix))

    def next(self, token: torch.Tensor) -> torch.Tensor:
        return self._keep(self.step.next(token))

    def _keep(self, logits: torch.Tensor) -> torch.Tensor:
        self.logits.append(logits.clone())
        return logits


@pytest.fixture(scope="module")
def world(world_dir, cache_dir, heldout):
    """(device, dtype) -> the world's models so loaded and the held-out photos' raw CLIP vectors, loaded once."""
    loaded: dict[tuple[str, str], tuple] = {}

    def get(device: str, dtype: str):
        if (device, dtype) not in loaded:
            models = load_models(str(world_dir), device=device, dtype=dtype, cache_dir=cache_dir)
            raw = models.encoder.embed_images([h.image for h in heldout], normalize=False)  # (240, D)
            loaded[device, dtype] = models, raw
        return loaded[device, dtype]

    return get


@dataclass
class Run:
    captions: list  # one per photo
    steps: list[Recorded]  # one per batch
    batch: int

    def logits(self, photo: int, position: int) -> torch.Tensor:
        """(vocab,) the logits the step gave `photo` before its token at `position`."""
        return self.steps[photo // self.batch].logits[position][photo % self.batch]


def run(models, raw, batch: int, max_tokens: int, choose) -> Run:
    """Captions of `raw`, `batch` photos at a time, through the steps `choose` makes (None: the plain step)."""
    made: list[Recorded] = []

    def recorded(lm, batch: int, length: int, *, graphs: bool = False) -> Recorded:
        made.append(Recorded(choose(lm, batch, length) or ForwardStep(lm)))
        return made[-1]

    options = DecodingOptions(max_tokens=max_tokens)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(models.captioner, "choose_step", recorded)
        captions = [
            caption
            for start in range(0, len(raw), batch)
            for [caption] in decode(models.captioner, raw[start : start + batch], options)
        ]
    return Run(captions, made, batch)


def plain(lm, batch: int, length: int, *, graphs: bool = False) -> None:
    return None


@pytest.fixture(scope="module")
def plain_runs(world):
    """(device, dtype, batch, max_tokens, photos) -> the plain step's run, made once."""
    runs: dict[tuple, Run] = {}

    def get(device: str, dtype: str, batch: int, max_tokens: int, photos: int) -> Run:
        key = (device, dtype, batch, max_tokens, photos)
        if key not in runs:
            models, raw = world(device, dtype)
            runs[key] = run(models, raw[:photos], batch, max_tokens, plain)
        return runs[key]

    return get


def parted(expected: Run, got: Run, dtype: torch.dtype, ties: bool) -> list[int]:
    """The photos whose captions differ from the plain step's: any difference, or with `ties` one that is not
    a tie."""
    if not ties:
        return [photo for photo, (a, b) in enumerate(zip(expected.captions, got.captions)) if a.tokens != b.tokens]
    return not_ties(expected, got, dtype)


def not_ties(expected: Run, got: Run, dtype: torch.dtype) -> list[int]:
    """The photos whose captions differ other than on a tie: where they first part, the plain step's logits for
    the two tokens are further apart than two roundings in the model's dtype. (In bfloat16 two candidates can
    round to the very same logit, and the fixed-shape steps, which attend over a masked static cache, can
    break such a tie the other way.)"""
    eps = torch.finfo(dtype).eps
    wrong = []
    for photo, (a, b) in enumerate(zip(expected.captions, got.captions)):
        if a.tokens == b.tokens:
            continue
        position = next((p for p, (x, y) in enumerate(zip(a.tokens, b.tokens)) if x != y), None)
        if position is None:
            wrong.append(photo)
            continue
        logits = expected.logits(photo, position)
        x, y = float(logits[a.tokens[position]]), float(logits[b.tokens[position]])
        if abs(x - y) > 2 * eps * max(abs(x), abs(y)):
            wrong.append(photo)
    return wrong


@pytest.mark.parametrize("case", CASES)
def test_every_step_gives_the_plain_steps_captions(case: Case, world, plain_runs) -> None:
    models, raw = world(case.device, case.dtype)
    dtype = getattr(torch, case.dtype)
    for batch in case.batches:
        expected = plain_runs(case.device, case.dtype, batch, 30, len(raw))
        got = run(models, raw, batch, 30, CHOOSERS[case.step])
        assert got.steps and all(type(step.step) is KINDS[case.step] for step in got.steps)  # not the plain step
        assert len(got.captions) == len(raw)
        assert parted(expected, got, dtype, case.ties) == [], (case, batch)
        same = [(a, b) for a, b in zip(expected.captions, got.captions) if a.tokens == b.tokens]
        assert (
            len(same) >= 0.99 * len(raw)
            and max(abs(a.log_prob - b.log_prob) for a, b in same) < LOG_PROB_TOLERANCE[dtype]
        )
        if case.exact:
            reference = run(models, raw, batch, 30, CHOOSERS[case.exact])
            assert [len(step.logits) for step in got.steps] == [len(step.logits) for step in reference.steps]
            assert all(
                torch.equal(a, b)
                for mine, theirs in zip(got.steps, reference.steps)
                for a, b in zip(mine.logits, theirs.logits)
            ), (case, batch)
    batch = min(case.batches[-1], 8)
    for max_tokens in CUT_OFF:  # captions cut off before their stop, and the steps a short caption takes
        expected = plain_runs(case.device, case.dtype, batch, max_tokens, 8)
        got = run(models, raw[:8], batch, max_tokens, CHOOSERS[case.step])
        assert parted(expected, got, dtype, case.ties) == [] and all(len(c.tokens) == max_tokens for c in got.captions)


def test_graphs_without_the_speed_paths_are_refused_not_ignored(world, monkeypatch) -> None:
    """A captioner built without `load_models` has no step chooser: fixed shapes asked of it would silently do
    nothing, so they are refused."""
    models, raw = world("cpu", "float32")
    monkeypatch.setattr(models.captioner, "choose_step", None)
    with pytest.raises(InvalidConfig, match="graphs=True needs the speed paths"):
        decode(models.captioner, raw[:2], DecodingOptions(graphs=True))
    assert len(decode(models.captioner, raw[:2], DecodingOptions())) == 2  # the plain step still captions


def test_the_chooser_picks_what_the_models_allow(world) -> None:
    """What `load_models` wires: the lean step for a CPU's GPT-2, in one call where bf16_rows applies, fixed
    shapes when asked."""
    models, _ = world("cpu", "float32")
    lm = models.captioner.lm
    assert models.captioner.choose_step is choose_step
    assert type(choose_step(lm, 16, 40)) is Gpt2Steps and choose_step(lm, 1, 40).fused is None  # float32: Python
    assert type(choose_step(lm, 16, 40, graphs=True)) is StaticStep
    if bf16_rows.cpu_supports() and packing_available():
        bf16_lm = world("cpu", "bfloat16")[0].captioner.lm
        assert choose_step(bf16_lm, 3, 40).fused is not None and choose_step(bf16_lm, 4, 40).fused is None


@pytest.mark.parametrize(
    "package, paths_off",
    [("torch", {"oneDNN packed linears", "the lean GPT-2 steps"}), ("transformers", {"the lean GPT-2 steps"})],
)
def test_a_release_not_known_to_work_takes_the_plain_path_with_one_log_line(
    package: str, paths_off: set[str], world, world_dir, cache_dir, monkeypatch, caplog
) -> None:
    fast, raw = world("cpu", "float32")
    expected = decode(fast.captioner, raw, DecodingOptions())
    monkeypatch.setitem(versions.KNOWN_TO_WORK, package, SpecifierSet("<0.1"))  # no release is known to work
    monkeypatch.setattr(versions, "_told", set())
    with caplog.at_level(logging.WARNING, logger=versions.__name__):
        models = load_models(str(world_dir), device="cpu", dtype="float32", cache_dir=cache_dir)
        got = decode(models.captioner, raw, DecodingOptions())
        got += decode(models.captioner, raw, DecodingOptions())  # asking again says nothing more
    packed = any(isinstance(m, PackedLinear) for m in models.captioner.modules())
    assert packed == ("oneDNN packed linears" not in paths_off) and packing_available() == packed
    assert choose_step(models.captioner.lm, 16, 40) is None  # the plain forward step
    assert [[c.tokens for c in group] for group in got] == [[c.tokens for c in group] for group in expected * 2]
    said = [record.getMessage() for record in caplog.records if record.name == versions.__name__]
    assert sorted(line.split(" off:")[0] for line in said) == sorted(paths_off)
    assert all(f"private {package} APIs" in line and str(versions.installed(package)) in line for line in said)
