"""A speed path runs only where it measured at least as fast as the plain path on the machine running it
(vision/fast/calibration.py), and that choice is cached per machine, libraries and models.

A fake timer stands in for the stopwatch: the workloads still run on the world's models, each path switched on
and off for real, but the times are scripted, so the test can make a path slower, faster or tied."""

from __future__ import annotations

import json
import logging
import random
import statistics
from collections import defaultdict

import pytest

from clipchat.errors import InvalidConfig
from vision import load_models
from vision.decoding.strategies import DecodingOptions, decode
from vision.fast import bf16_rows, calibration, choose_step, lone_step, plain_step
from vision.fast.calibration import SpeedPath, Trial, Variant, Why
from vision.fast.gpt2_steps import Gpt2Steps
from vision.fast.packed_linear import PackedLinear, PackedSelfAttention, packing_available
from vision.pipeline import use_speed_paths

pytestmark = pytest.mark.skipif(not packing_available(), reason="the CPU speed paths need oneDNN")
NEEDS_KERNEL = pytest.mark.skipif(
    not bf16_rows.cpu_supports(), reason="the few-row kernel needs AVX-512 BF16 (and a compiler)"
)


class Scripted:
    """A timer that runs each workload (so every path really switches) and answers scripted seconds:
    `times[path][variant]`, or per workload `times[path][variant, workload]`; every trial recorded."""

    def __init__(self, times: dict) -> None:
        self.times, self.trials = times, []

    def __call__(self, run, trial: Trial) -> float:
        run()
        self.trials.append(trial)
        scripted = self.times.get(trial.path, {})
        return scripted.get((trial.variant, trial.workload), scripted.get(trial.variant, 1.0))


class Never:
    def __call__(self, run, trial: Trial) -> float:
        raise AssertionError(f"timed {trial}, where the cache should have answered")


@pytest.fixture
def plain_models(world_dir, cache_dir):
    """dtype -> the world's models with no speed path, as load_models leaves them under CLIPCHAT_SPEED_PATHS=none
    (the session's cache: its tag vectors; each test's choices go to its own tmp_path)."""

    def load(dtype: str = "float32"):
        return load_models(str(world_dir), device="cpu", dtype=dtype, cache_dir=cache_dir, speed_paths="none")

    return load


def choose(models, cache_dir, timer, mode="auto"):
    return use_speed_paths(models.encoder, models.captioner, cache_dir, mode, timer)


def running(models) -> set[SpeedPath]:
    """The paths the models actually run, read off the modules and the step chooser."""
    gpt2 = [m for m in models.captioner.modules() if isinstance(m, PackedLinear)]
    on = set()
    if models.captioner.choose_step is choose_step and Gpt2Steps.fits(models.captioner.lm):
        on.add(SpeedPath.LEAN_STEP)
    if any(m.onednn for m in gpt2):
        on.add(SpeedPath.GPT2_PACKED)
    if any(m.few_rows for m in gpt2):
        on.add(SpeedPath.FEW_ROWS)
    if any(isinstance(m, PackedLinear | PackedSelfAttention) for m in models.encoder.model.modules()):
        on.add(SpeedPath.CLIP_PACKED)
    return on


F32_PATHS = {SpeedPath.LEAN_STEP, SpeedPath.GPT2_PACKED, SpeedPath.CLIP_PACKED}


@pytest.mark.parametrize(
    "plain, fast, on", [(1.0, 1.2, False), (1.0, 0.8, True), (1.0, 1.0, True)], ids=["slower", "faster", "tied"]
)
def test_a_path_runs_only_where_it_measured_at_least_as_fast(plain, fast, on, plain_models, tmp_path) -> None:
    models = plain_models()
    timer = Scripted({path: {Variant.PLAIN: plain, Variant.FAST: fast} for path in SpeedPath})
    chosen = choose(models, tmp_path, timer)
    measured = {v.path for v in chosen.verdicts if v.why == Why.MEASURED}
    assert measured == F32_PATHS  # float32: no few-row kernel
    assert {v.path for v in chosen.verdicts if v.on} == (F32_PATHS if on else set())
    assert running(models) == (F32_PATHS if on else set())
    assert {t.path for t in timer.trials} == F32_PATHS and len(timer.trials) == 3 * 2 * (2 + 2 + 1)
    word = "on" if on else "off"
    said = chosen.describe()
    assert (
        f"packed linears for CLIP: {word} (plain {1000 * plain:.0f} ms vs packed {1000 * fast:.0f} ms on this CPU)"
        in said
    )
    assert (
        f"packed linears for GPT-2: {word} (a lone photo: plain {1000 * plain:.0f} ms vs packed {1000 * fast:.0f} ms; "
        f"16 photos: plain {1000 * plain:.0f} ms vs packed {1000 * fast:.0f} ms; on this CPU)"
    ) in said


@pytest.mark.parametrize("slower", sorted(F32_PATHS))
def test_one_path_slower_is_the_one_left_out_and_the_captions_stay(slower, plain_models, tmp_path, heldout) -> None:
    reference = plain_models()
    raw = reference.encoder.embed_images([h.image for h in heldout[:8]], normalize=False)
    expected = decode(reference.captioner, raw, DecodingOptions())
    models = plain_models()
    times = {path: {Variant.PLAIN: 1.0, Variant.FAST: 0.5} for path in SpeedPath}
    times[slower] = {Variant.PLAIN: 1.0, Variant.FAST: 0.5, (Variant.FAST, "lone"): 1.01}  # slower on one workload
    chosen = choose(models, tmp_path, Scripted(times))
    assert running(models) == F32_PATHS - {slower} == {v.path for v in chosen.verdicts if v.on}
    got = decode(models.captioner, raw, DecodingOptions())
    assert [[c.tokens for c in g] for g in got] == [[c.tokens for c in g] for g in expected]


@pytest.mark.parametrize("seed", range(3))
def test_no_path_that_measured_slower_is_ever_on(seed, plain_models, tmp_path) -> None:
    """Noisy times, as a shared machine gives: every path on has medians no slower than plain's on every workload,
    and every measured path off is slower on one."""
    rng = random.Random(seed)
    recorded: dict[tuple, list[float]] = defaultdict(list)

    def noisy(run, trial: Trial) -> float:
        run()
        seconds = rng.uniform(0.9, 1.1) * (1.0 if trial.variant == Variant.PLAIN else rng.choice((0.97, 1.03)))
        recorded[trial.path, trial.workload, trial.variant].append(seconds)
        return seconds

    chosen = choose(plain_models(), tmp_path, noisy)
    for verdict in chosen.verdicts:
        if verdict.why != Why.MEASURED:
            continue
        workloads = {w for p, w, _ in recorded if p == verdict.path}
        won = faster_on(recorded, verdict.path)
        assert verdict.on == (won == workloads), verdict
        if verdict.lone_only:  # the lean step for lone photos alone: it won them and lost the batch
            assert verdict.path == SpeedPath.LEAN_STEP and won == {"lone"}, verdict


def faster_on(recorded: dict, path: SpeedPath) -> set[str]:
    """The workloads on which `path`'s median was no slower than plain's."""
    return {
        w
        for p, w, _ in recorded
        if p == path
        and statistics.median(recorded[p, w, Variant.FAST]) <= statistics.median(recorded[p, w, Variant.PLAIN])
    }


@NEEDS_KERNEL
def test_the_few_row_kernel_is_timed_and_can_stand_without_packing(plain_models, tmp_path) -> None:
    """bfloat16: the kernel wins at a lone photo while oneDNN's packing loses; the kernel runs, F.linear beside it."""
    models = plain_models("bfloat16")
    if not bf16_rows.load(tmp_path):
        pytest.skip(f"the few-row kernel did not build: {bf16_rows.refusal()}")
    times = {path: {Variant.PLAIN: 1.0, Variant.FAST: 0.5} for path in SpeedPath}
    times[SpeedPath.GPT2_PACKED] = {Variant.PLAIN: 1.0, Variant.FAST: 2.0}
    chosen = choose(models, tmp_path, Scripted(times))
    assert {v.path for v in chosen.verdicts if v.on} == running(models) == set(SpeedPath) - {SpeedPath.GPT2_PACKED}
    linears = [m for m in models.captioner.modules() if isinstance(m, PackedLinear)]
    assert linears and all(m.few_rows and not m.onednn and not m.packed.numel() for m in linears)


def test_a_second_start_reads_the_choice_and_times_nothing(one_repeat, plain_models, tmp_path) -> None:
    times = {SpeedPath.CLIP_PACKED: {Variant.PLAIN: 1.0, Variant.FAST: 2.0}}
    first = choose(plain_models(), tmp_path, Scripted(times))
    models = plain_models()
    again = choose(models, tmp_path, Never())
    assert again.cached and not first.cached and again.verdicts == first.verdicts
    assert running(models) == F32_PATHS - {SpeedPath.CLIP_PACKED}
    assert len(list((tmp_path / calibration.FOLDER).glob("*.json"))) == 1


@pytest.mark.parametrize("change", ["cpu", "threads", "torch", "dtype"])
def test_a_new_machine_library_or_dtype_is_measured_again(
    one_repeat, change, plain_models, tmp_path, monkeypatch
) -> None:
    choose(plain_models(), tmp_path, Scripted({}))
    machine = calibration.machine_key()
    if change == "dtype":
        models = plain_models("bfloat16")
    else:
        models = plain_models()
        changed = {"cpu": "AMD EPYC 9R14 96-Core Processor", "threads": machine["threads"] + 1, "torch": "9.9.9"}
        monkeypatch.setattr(calibration, "machine_key", lambda: {**machine, change: changed[change]})
    timer = Scripted({})
    assert not choose(models, tmp_path, timer).cached and timer.trials
    assert len(list((tmp_path / calibration.FOLDER).glob("*.json"))) == 2


@pytest.fixture
def one_repeat(monkeypatch) -> None:
    """Where the choice's medians are not the point, one timed run per variant and workload."""
    monkeypatch.setattr(calibration, "REPEATS", 1)


@pytest.mark.parametrize("damage", ["garbage", "another key", "unknown path"])
def test_a_corrupt_or_stale_cache_file_is_ignored_with_one_log_line(
    one_repeat, damage, plain_models, tmp_path, caplog
) -> None:
    choose(plain_models(), tmp_path, Scripted({}))
    [path] = (tmp_path / calibration.FOLDER).glob("*.json")
    text = path.read_text()
    stored = json.loads(text)
    if damage == "garbage":
        path.write_bytes(b"\x00\xff not json")
    elif damage == "another key":
        path.write_text(json.dumps({**stored, "key": {**stored["key"], "threads": 999}}))
    else:
        stored["verdicts"][0]["path"] = "warp_drive"
        path.write_text(json.dumps(stored))
    timer = Scripted({SpeedPath.LEAN_STEP: {Variant.PLAIN: 1.0, Variant.FAST: 3.0}})
    models = plain_models()
    with caplog.at_level(logging.WARNING, logger=calibration.__name__):
        chosen = choose(models, tmp_path, timer)
    said = [r.getMessage() for r in caplog.records if r.name == calibration.__name__]
    assert len(said) == 1 and "ignoring the speed-path choice cached in" in said[0] and "measuring again" in said[0]
    assert not chosen.cached and timer.trials and SpeedPath.LEAN_STEP not in running(models)
    assert json.loads(path.read_text())["key"] == stored["key"] or damage == "another key"
    assert choose(plain_models(), tmp_path, Never()).cached  # rewritten whole


@pytest.mark.parametrize("mode, on", [("all", F32_PATHS), ("none", set())])
def test_the_operator_can_force_every_path_on_or_off(mode, on, world_dir, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("CLIPCHAT_SPEED_PATHS", mode.upper())
    models = load_models(str(world_dir), device="cpu", dtype="float32", cache_dir=tmp_path)
    assert running(models) == on and not (tmp_path / calibration.FOLDER).exists()
    assert all(v.why == Why.FORCED for v in models.speed_paths.verdicts if v.path in F32_PATHS)
    assert models.captioner.choose_step is (choose_step if on else plain_step)
    monkeypatch.setenv("CLIPCHAT_SPEED_PATHS", "fastest")
    with pytest.raises(InvalidConfig, match="Unknown speed paths 'fastest': use one of auto, all, none"):
        load_models(str(world_dir), device="cpu", dtype="float32", cache_dir=tmp_path)


def test_paths_past_the_time_budget_stay_off(plain_models, tmp_path) -> None:
    models = plain_models()
    mode = calibration.SpeedPathsMode.AUTO
    chosen = calibration.choose(models.encoder, models.captioner, tmp_path, mode, Never(), budget_s=-1.0)
    assert {v.path for v in chosen.verdicts if v.why == Why.OVER_BUDGET} == F32_PATHS and not running(models)
    assert "packed linears for CLIP: off (not timed within the calibration's" in str(chosen.describe())
    assert not (tmp_path / calibration.FOLDER).exists()  # a busy start leaves nothing off for good
    assert not choose(plain_models(), tmp_path, Scripted({})).cached


def test_doctor_says_which_paths_are_on_and_why(plain_models, tmp_path, one_repeat) -> None:
    """And a cache directory given as a string, as a caller of load_models may pass it, works the same."""
    from bot.ops.doctor import check_speed_paths
    from vision.catalog.settings import VisionSettings

    settings = VisionSettings(device="cpu", cache_dir=tmp_path, speed_paths="auto")
    assert "no choice cached for this CPU yet" in check_speed_paths(settings).detail
    times = {SpeedPath.CLIP_PACKED: {Variant.PLAIN: 0.020, Variant.FAST: 0.031}}
    choose(plain_models(), str(tmp_path), Scripted(times))
    detail = check_speed_paths(settings).detail
    assert "packed linears for CLIP: off (plain 20 ms vs packed 31 ms on this CPU)" in detail
    assert "packed linears for GPT-2: on (a lone photo: plain 1000 ms vs packed 1000 ms; 16 photos: plain" in detail
    assert calibration.machine_key()["cpu"] in detail and "float32" in detail
    forced = check_speed_paths(VisionSettings(device="cpu", cache_dir=tmp_path, speed_paths="none")).detail
    assert forced.startswith("all off (CLIPCHAT_SPEED_PATHS=none)")


def test_timings_too_unsteady_to_decide_leave_the_path_off_and_uncached(plain_models, tmp_path) -> None:
    """A busy machine: the same workload's repeats swing 2x. No verdict either way; the next start times again."""
    swings = iter([1.0, 2.0] * 100)

    def busy(run, trial: Trial) -> float:
        run()
        return next(swings) if trial.path == SpeedPath.CLIP_PACKED else 1.0

    models = plain_models()
    chosen = choose(models, tmp_path, busy)
    [clip] = [v for v in chosen.verdicts if v.path == SpeedPath.CLIP_PACKED]
    assert clip.why == Why.UNSTEADY and not clip.on and SpeedPath.CLIP_PACKED not in running(models)
    assert "its timings varied too much to decide" in clip.describe()
    assert running(models) == F32_PATHS - {SpeedPath.CLIP_PACKED}  # the steady ones are decided
    assert not choose(plain_models(), tmp_path, Scripted({})).cached


@pytest.mark.parametrize("faster", [True, False], ids=["faster-every-repeat", "slower-every-repeat"])
def test_a_busy_machine_still_decides_a_path_that_won_or_lost_every_repeat(faster, plain_models, tmp_path) -> None:
    """Repeats that swing 3x, as a shared host gives, but the path's slowest run beats plain's fastest (or its
    fastest loses to plain's slowest): that is a verdict, measured and cached, not a path left off for noise."""
    swings = {Variant.PLAIN: iter([1.0, 3.0] * 100), Variant.FAST: iter([0.4, 0.9] * 100)}
    if not faster:
        swings = {Variant.PLAIN: iter([0.4, 0.9] * 100), Variant.FAST: iter([1.0, 3.0] * 100)}

    def busy(run, trial: Trial) -> float:
        run()
        return next(swings[trial.variant]) if trial.path == SpeedPath.CLIP_PACKED else 1.0

    models = plain_models()
    chosen = choose(models, tmp_path, busy)
    [clip] = [v for v in chosen.verdicts if v.path == SpeedPath.CLIP_PACKED]
    assert clip.why == Why.MEASURED and clip.on == faster
    assert (SpeedPath.CLIP_PACKED in running(models)) == faster
    assert choose(plain_models(), tmp_path, Never()).cached  # decided: the next start reads it


def test_a_lean_step_that_wins_lone_photos_and_loses_batches_serves_lone_photos_only(
    plain_models, tmp_path, heldout
) -> None:
    """The Zen 4 case: the lean step took a lone photo from 46 to 40 ms and 16 photos from 31 to a hair over. It
    then runs for one row and plain steps take batches; captions stay as the plain path gives them."""
    reference = plain_models()
    raw = reference.encoder.embed_images([h.image for h in heldout[:4]], normalize=False)
    expected = decode(reference.captioner, raw, DecodingOptions())
    alone = decode(reference.captioner, raw[:1], DecodingOptions())
    models = plain_models()
    times = {path: {Variant.PLAIN: 1.0, Variant.FAST: 0.5} for path in SpeedPath}
    times[SpeedPath.LEAN_STEP] = {Variant.PLAIN: 1.0, Variant.FAST: 0.8, (Variant.FAST, "batch"): 1.02}
    chosen = choose(models, tmp_path, Scripted(times))
    [lean] = [v for v in chosen.verdicts if v.path == SpeedPath.LEAN_STEP]
    assert not lean.on and lean.lone_only and lean.why == Why.MEASURED
    assert "the lean GPT-2 step: on for a lone photo (a lone photo: plain 1000 ms vs lean 800 ms;" in lean.describe()
    assert models.captioner.choose_step is lone_step
    lm = models.captioner.lm
    assert isinstance(lone_step(lm, 1, 30), Gpt2Steps) and lone_step(lm, 16, 30) is None
    assert [[c.tokens for c in g] for g in decode(models.captioner, raw, DecodingOptions())] == [
        [c.tokens for c in g] for g in expected
    ]
    assert [[c.tokens for c in g] for g in decode(models.captioner, raw[:1], DecodingOptions())] == [
        [c.tokens for c in g] for g in alone
    ]
    again = plain_models()
    cached = choose(again, tmp_path, Never())
    assert cached.cached and again.captioner.choose_step is lone_step  # the next start serves lone photos alike
