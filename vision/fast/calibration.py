"""Which CPU speed paths run: each timed against the plain path on the loaded models, on this machine, once.

The paths were tuned on a Zen 4, and a path that wins there can lose elsewhere: on a Sapphire Rapids, whose MKL
multiplies float32 with AVX-512, the packed float32 linears made a lone photo 15% slower (issue 32). So at the
first start each path that the CPU and the libraries allow is timed against the plain path with a short
workload, and only a path at least as fast on every workload is plugged in:

- the few-row bfloat16 kernel (`bf16_rows`): a lone photo's caption (its prefix and LONE_TOKENS steps);
- packed linears for CLIP: a lone photo's CLIP pass;
- the lean GPT-2 step (`gpt2_steps`; the one-call step where the kernel is on) against transformers'
  `forward`: the lone caption and one pass of 16 captions; a lean step that wins the first and loses the second
  serves lone captions only (`lone_step`: steps are chosen per call, by their rows);
- packed linears for GPT-2 (`packed_linear`), on the step just chosen: the same two workloads.

Each workload runs once per variant untimed, then REPEATS times per variant, interleaved (plain, path; path,
plain; ...) so that drift on a shared machine hits both alike; the medians decide. No tolerance for a slower
path: ties go to the path, and a path measured slower by noise alone costs at most that noise. The whole
calibration stops at BUDGET_S. Where the repeats of one workload differ by more than NOISE, only ranges that do
not overlap decide (the path faster, or slower, in every repeat); otherwise the path gets no verdict: either way
it stays off and says so, and the choice is not cached, so that a start on a busy machine does not leave a path
off (or on) for good.

The choice is written to `cache_dir/speed_paths/`, one JSON file per key: the CPU's model string and the
features that matter (`catalog.devices.isa_flags`), torch and transformers, the thread count, the models'
identities and dtypes, and FORMAT. A second start with the same key reads it and times nothing; a corrupt or
stale file is ignored with one log line and measured anew.

    paths = choose(encoder, captioner, cache_dir, SpeedPathsMode.AUTO)   # the models now run what won
    paths.describe()  # ["packed linears for GPT-2: off (plain 41 ms vs packed 47 ms on this CPU)", ...]

`SpeedPathsMode.ALL` and `NONE` (CLIPCHAT_SPEED_PATHS) force every available path on or off, timing nothing.
`timer` is the one source of times: a test hands it a fake to check the choices.
"""

from __future__ import annotations

import hashlib
import json
import logging
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from enum import StrEnum
from pathlib import Path

import torch
from torch import nn

from ..catalog.devices import SpeedPathsMode, cpu_model, isa_flags
from ..models.captioner import PrefixCaptioner
from . import bf16_rows, choose_step, lone_step, plain_step
from .gpt2_steps import Gpt2Steps
from .packed_linear import PackedLinear, PackedSelfAttention, pack_linears, packed_dtypes, packing_available
from .versions import installed

log = logging.getLogger(__name__)

REPEATS = 3  # per variant and workload; the median of 3 interleaved runs
LONE_TOKENS = 2  # a lone caption: the prefix pass and 2 steps
BATCH = 16  # the batch where batching matters: the bot's default largest batch
# past this, paths not yet timed stay off for this start, and nothing is cached (a few seconds on the default set
# on a quiet machine: docs/benchmarks.md)
BUDGET_S = 20.0
# The same workload's slowest run over its fastest, beyond which its times say more about the machine's other jobs
# than about the path: on the shared 2-core Sapphire Rapids (load 2-5) runs of one lone photo swung 1.3-10x
# between repeats, on a quiet one they stay within a few percent
NOISE = 1.5
FORMAT = 3  # a new workload or rule is a new key: every cached choice is measured again
FOLDER = "speed_paths"


class SpeedPath(StrEnum):
    """In the order they are timed, each on top of those already chosen, the cheapest to time and likeliest to win
    first, for a start that runs out of time: the few-row kernel (beside plain linears for more rows), CLIP's
    packing, the lean step (the one-call step where the kernel is on), then GPT-2's packing."""

    FEW_ROWS = "few_rows"
    CLIP_PACKED = "clip_packed"
    LEAN_STEP = "lean_step"
    GPT2_PACKED = "gpt2_packed"


WORKLOADS = {"lone": "a lone photo", "batch": f"{BATCH} photos"}
LABELS = {
    SpeedPath.LEAN_STEP: ("the lean GPT-2 step", "lean"),
    SpeedPath.GPT2_PACKED: ("packed linears for GPT-2", "packed"),
    SpeedPath.FEW_ROWS: ("the few-row bfloat16 kernel", "kernel"),
    SpeedPath.CLIP_PACKED: ("packed linears for CLIP", "packed"),
}


class Why(StrEnum):
    MEASURED = "measured"  # timed here (or read from the cache of such a timing)
    FORCED = "forced"  # CLIPCHAT_SPEED_PATHS=all or none
    UNAVAILABLE = "unavailable"  # this CPU, build or model cannot run it
    OVER_BUDGET = "over budget"  # the calibration ran out of time before timing it
    UNSTEADY = "unsteady"  # its repeats varied past NOISE: a busy machine, no verdict


class Variant(StrEnum):
    PLAIN = "plain"
    FAST = "fast"


@dataclass(frozen=True)
class Trial:
    """One timed run: which path, which variant of it, which workload (`lone`, `batch`)."""

    path: SpeedPath
    variant: Variant
    workload: str


Timer = Callable[[Callable[[], object], Trial], float]  # runs the workload once; returns its seconds


def wall_timer(run: Callable[[], object], trial: Trial) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


@dataclass(frozen=True)
class Verdict:
    path: SpeedPath
    on: bool
    why: Why
    # per workload (`lone`, `batch`): the medians in ms, plain's and the path's
    workloads: tuple[tuple[str, float, float], ...] = ()
    # the lean step only: it won a lone photo and lost the batch, so it runs for one row and plain steps beyond
    lone_only: bool = False

    def describe(self) -> str:
        label, short = LABELS[self.path]
        state = "on" if self.on else "on for a lone photo" if self.lone_only else "off"
        if self.why == Why.MEASURED and self.workloads:
            if len(self.workloads) == 1:
                [(_, plain, fast)] = self.workloads
                return f"{label}: {state} (plain {plain:.0f} ms vs {short} {fast:.0f} ms on this CPU)"
            each = "; ".join(
                f"{WORKLOADS.get(name, name)}: plain {plain:.0f} ms vs {short} {fast:.0f} ms"
                for name, plain, fast in self.workloads
            )
            return f"{label}: {state} ({each}; on this CPU)"
        reasons = {
            Why.FORCED: "CLIPCHAT_SPEED_PATHS",
            Why.UNAVAILABLE: "not available on this CPU, build or model",
            Why.OVER_BUDGET: f"not timed within the calibration's {BUDGET_S:.0f} s",
            Why.UNSTEADY: "its timings varied too much to decide: the machine is busy; timed again at the next start",
        }
        return f"{label}: {state} ({reasons.get(self.why, self.why)})"


@dataclass(frozen=True)
class SpeedPaths:
    """The speed paths chosen for one pair of models: each path's verdict, how they were chosen, and in how
    long (`seconds`: the timing itself; 0 for a cached or forced choice)."""

    mode: SpeedPathsMode
    verdicts: tuple[Verdict, ...]
    cached: bool = False
    seconds: float = 0.0

    def on(self, path: SpeedPath) -> bool:
        return any(v.path == path and v.on for v in self.verdicts)

    def describe(self) -> list[str]:
        return [verdict.describe() for verdict in self.verdicts]

    def as_dict(self) -> dict:
        return {
            "mode": str(self.mode),
            "cached": self.cached,
            "seconds": round(self.seconds, 2),
            "paths": {str(v.path): {**asdict(v), "path": str(v.path), "why": str(v.why)} for v in self.verdicts},
        }


def describe_verdict(entry: dict) -> str:
    """`Verdict.describe` for a verdict as `SpeedPaths.as_dict` records it (a benchmark's JSON)."""
    return _verdict(entry).describe()


def choose(
    encoder, captioner, cache_dir: Path, mode: SpeedPathsMode, timer: Timer = wall_timer, budget_s: float = BUDGET_S
) -> SpeedPaths:
    """Plug into `encoder` and `captioner` (plain, on a CPU, GPT-2 linearized) the speed paths `mode` asks for:
    under auto those measured at least as fast as the plain path here, from the cache when it has this key."""
    if mode == SpeedPathsMode.NONE:  # nothing packed, nothing built: the plain models as they are
        if isinstance(captioner, PrefixCaptioner):
            captioner.choose_step = plain_step
        return SpeedPaths(mode, tuple(Verdict(path, False, Why.FORCED) for path in SpeedPath))
    wiring = _Wiring(encoder, captioner, cache_dir)
    if mode == SpeedPathsMode.ALL:
        verdicts = tuple(
            Verdict(path, True, Why.FORCED) if path in wiring.available else _unavailable(path) for path in SpeedPath
        )
        wiring.settle(verdicts)
        return SpeedPaths(mode, verdicts)
    key = cache_key(encoder, captioner, wiring)
    cached = read_cache(cache_dir, key)
    if cached is not None:
        wiring.settle(cached)
        return SpeedPaths(mode, cached, cached=True)
    started = time.monotonic()
    deadline = started + budget_s
    measured: list[Verdict] = []
    for path in SpeedPath:  # in this order: each path is timed on top of the ones already chosen
        if path not in wiring.available:
            measured.append(_unavailable(path))
        else:
            measured.append(_measure(path, wiring, timer, deadline))
        wiring.switch(path, measured[-1].on, lone_only=measured[-1].lone_only)
    chosen = SpeedPaths(mode, tuple(measured), seconds=time.monotonic() - started)
    wiring.settle(tuple(measured))
    log.info("speed paths measured in %.1f s: %s", chosen.seconds, "; ".join(chosen.describe()))
    if any(v.why in (Why.OVER_BUDGET, Why.UNSTEADY) for v in measured):
        # a busy machine at this start; kept, the untimed paths would stay off for good
        log.warning("speed paths: not all decided (time bound or a busy machine); the next start times them again")
    else:
        write_cache(cache_dir, key, chosen)
    return chosen


def _unavailable(path: SpeedPath) -> Verdict:
    return Verdict(path, False, Why.UNAVAILABLE)


def _measure(path: SpeedPath, wiring: _Wiring, timer: Timer, deadline: float) -> Verdict:
    """Time `path` against plain; off, unmeasured, once `deadline` (time.monotonic) passes."""
    if time.monotonic() > deadline:
        return Verdict(path, False, Why.OVER_BUDGET)
    workloads = wiring.workloads(path)
    times: dict[tuple[Variant, str], list[float]] = {}
    for variant in Variant:  # the first call of each builds oneDNN's primitives, allocates caches: untimed
        wiring.switch(path, variant == Variant.FAST)
        for run in workloads.values():
            run()
    for repeat in range(REPEATS):
        if time.monotonic() > deadline:
            return Verdict(path, False, Why.OVER_BUDGET)
        for variant in (Variant.PLAIN, Variant.FAST) if repeat % 2 == 0 else (Variant.FAST, Variant.PLAIN):
            wiring.switch(path, variant == Variant.FAST)
            for name, run in workloads.items():
                times.setdefault((variant, name), []).append(timer(run, Trial(path, variant, name)))
    outcomes = [_outcome(times[Variant.PLAIN, name], times[Variant.FAST, name]) for name in workloads]
    if Outcome.SLOWER not in outcomes and Outcome.UNDECIDED in outcomes:
        return Verdict(path, False, Why.UNSTEADY)
    medians = tuple(
        (
            name,
            1000 * statistics.median(times[Variant.PLAIN, name]),
            1000 * statistics.median(times[Variant.FAST, name]),
        )
        for name in workloads
    )
    on = Outcome.SLOWER not in outcomes  # at least as fast on every workload
    # A step is chosen per call, by its rows: the lean step can serve lone photos alone where only they gain
    by_workload = dict(zip(workloads, outcomes, strict=True))
    lone_only = path == SpeedPath.LEAN_STEP and by_workload == {"lone": Outcome.FASTER, "batch": Outcome.SLOWER}
    return Verdict(path, on, Why.MEASURED, medians, lone_only=lone_only)


class Outcome(StrEnum):
    FASTER = "faster"  # or tied
    SLOWER = "slower"
    UNDECIDED = "undecided"


def _outcome(plain: list[float], fast: list[float]) -> Outcome:
    """One workload's repeats: the medians decide where both variants ran steadily (within NOISE). On a busy
    machine the ranges decide alone, and only when they do not overlap: a path faster than plain in every
    repeat, interleaved, has won whatever else ran meanwhile. On a shared 2-core Zen 4 the packed bfloat16 GPT-2
    took 24 against 37 ms for 16 photos in one start, and in the next its repeats swung past NOISE and it stayed
    off."""
    if max(fast) < min(plain):
        return Outcome.FASTER
    if min(fast) > max(plain):
        return Outcome.SLOWER
    if any(max(runs) > NOISE * min(runs) for runs in (plain, fast)):
        return Outcome.UNDECIDED
    return Outcome.FASTER if statistics.median(fast) <= statistics.median(plain) else Outcome.SLOWER


class _Wiring:
    """The models with each available speed path switchable on and off in place, for timing, then settled."""

    def __init__(self, encoder, captioner, cache_dir: Path) -> None:
        self.encoder, self.captioner = encoder, captioner
        self.lm = captioner.lm
        self.chooses = isinstance(captioner, PrefixCaptioner)  # the guided captioner decodes its own way
        lm_dtype = next(self.lm.parameters()).dtype
        self.few_rows_ready = bool(
            lm_dtype == torch.bfloat16
            and bf16_rows.cpu_supports()
            and packing_available()
            and bf16_rows.load(cache_dir)
        )
        # packed when first switched on: a start whose cached choice leaves them off packs nothing
        self.gpt2 = _Sites(captioner if isinstance(captioner, nn.Module) else self.lm, self.few_rows_ready)
        self.clip = _Sites(encoder.model, False)  # a guided captioner is its GPT-2 alone
        self.available: set[SpeedPath] = set()
        if self.chooses and Gpt2Steps.fits(self.lm):
            self.available.add(SpeedPath.LEAN_STEP)
        if lm_dtype in packed_dtypes():
            self.available.add(SpeedPath.GPT2_PACKED)
        if self.few_rows_ready:
            self.available.add(SpeedPath.FEW_ROWS)
        if next(encoder.model.parameters()).dtype in packed_dtypes():
            self.available.add(SpeedPath.CLIP_PACKED)
        self.state = dict.fromkeys(SpeedPath, False)
        self.lean_for_lone_only = False  # the lean step's `lone_only` verdict: the only path served by rows
        self._apply()

    def switch(self, path: SpeedPath, on: bool, lone_only: bool = False) -> None:
        self.state[path] = on and path in self.available
        if path == SpeedPath.LEAN_STEP:
            self.lean_for_lone_only = lone_only and path in self.available
        self._apply()

    def settle(self, verdicts: tuple[Verdict, ...]) -> None:
        """Leave the models with exactly the paths the verdicts turn on (those available), the rest's packed copies
        freed."""
        self.state = {
            path: any(v.path == path and v.on for v in verdicts) and path in self.available for path in SpeedPath
        }
        lean = SpeedPath.LEAN_STEP
        self.lean_for_lone_only = lean in self.available and any(v.path == lean and v.lone_only for v in verdicts)
        self._apply()
        self.gpt2.settle(self.state[SpeedPath.GPT2_PACKED], self.state[SpeedPath.FEW_ROWS])
        self.clip.settle(self.state[SpeedPath.CLIP_PACKED], False)

    def _apply(self) -> None:
        if self.chooses:
            lean = self.state[SpeedPath.LEAN_STEP]
            self.captioner.choose_step = choose_step if lean else lone_step if self.lean_for_lone_only else plain_step
        self.gpt2.switch(self.state[SpeedPath.GPT2_PACKED], self.state[SpeedPath.FEW_ROWS])
        self.clip.switch(self.state[SpeedPath.CLIP_PACKED], False)

    def workloads(self, path: SpeedPath) -> dict[str, Callable[[], object]]:
        if path == SpeedPath.CLIP_PACKED:
            from PIL import Image

            pixels = self.encoder.preprocess_images([Image.new("RGB", (256, 256), (120, 90, 60))])
            return {"lone": lambda: _no_grad(lambda: self.encoder.embed_pixels(pixels, normalize=False))}
        lone: dict[str, Callable[[], object]] = {"lone": lambda: self._caption(1, None, LONE_TOKENS)}
        if path == SpeedPath.FEW_ROWS:  # at most bf16_rows.MAX_ROWS rows: a batch never reaches it
            return lone
        return lone | {"batch": lambda: self._caption(BATCH, 1, 0)}  # one pass of 16 rows, as a step of 16 is

    def _caption(self, batch: int, positions: int | None, tokens: int) -> None:
        """A prefix of `positions` embeddings (default: the captioner's prefix length) for `batch` captions, then
        `tokens` greedy steps, through the step the captioner now chooses."""
        from ..decoding.steps import ForwardStep

        config = getattr(self.captioner, "config", None)
        length: int = positions or getattr(config, "prefix_length", None) or 10
        width = self.lm.get_input_embeddings().weight
        with torch.inference_mode():
            prefix = torch.randn(batch, length, width.shape[1], generator=torch.Generator().manual_seed(0)) * 0.02
            chooser = self.captioner.choose_step if self.chooses else None
            step = (chooser and chooser(self.lm, batch, length + tokens)) or ForwardStep(self.lm)
            logits = step.first(prefix.to(width.dtype))
            for _ in range(tokens):
                logits = step.next(logits.argmax(-1))


def _no_grad(run: Callable[[], object]) -> object:
    with torch.inference_mode():
        return run()


class _Sites:
    """Every linear and self-attention of a model that pack_linears swaps, switchable between the plain module
    and its packed twin (with or without the few-row kernel)."""

    def __init__(self, model: nn.Module, few_rows: bool) -> None:
        self.model, self.few_rows = model, few_rows
        self.sites: list[tuple[nn.Module, str, nn.Module]] | None = None  # packed at the first switch on

    def _pack(self) -> list[tuple[nn.Module, str, nn.Module]]:
        self.sites = []
        pack_linears(self.model, self.few_rows)
        for parent in list(self.model.modules()):
            for name, child in parent.named_children():
                if isinstance(child, PackedLinear | PackedSelfAttention):
                    self.sites.append((parent, name, child))
        self.kernel = {id(m): getattr(m, "few_rows", False) for _, _, m in self.sites}
        return self.sites

    def switch(self, packed: bool, few_rows: bool) -> None:
        if self.sites is None and not (packed or few_rows):
            return  # never packed: the plain modules are in place
        for parent, name, module in self.sites if self.sites is not None else self._pack():
            kernel = few_rows and self.kernel[id(module)]
            if not (packed or kernel):
                setattr(parent, name, module._source)
                continue
            setattr(parent, name, module)
            if isinstance(module, PackedLinear):
                module.few_rows, module.onednn = kernel, packed

    def settle(self, packed: bool, few_rows: bool) -> None:
        """Free what the chosen switch does not use: the packed copies where oneDNN is off."""
        for _, _, module in self.sites or ():
            if isinstance(module, PackedLinear) and not packed and module.few_rows and few_rows:
                module.unpack()
        self.sites = []  # the modules are set for good: switching again finds nothing to swap


def cache_key(encoder, captioner, wiring: _Wiring | None = None) -> dict:
    """What makes a timing valid elsewhere: the same CPU, libraries, threads, models and dtypes."""
    lm = captioner.lm
    config = lm.config
    return {
        "format": FORMAT,
        **machine_key(),
        "clip": str(encoder.identity),
        "clip_dtype": str(encoder.dtype).removeprefix("torch."),
        "captioner": type(captioner).__name__,
        "language_model": f"{config._name_or_path or config.model_type} {config.n_layer}x{config.n_embd}",
        "lm_dtype": str(next(lm.parameters()).dtype).removeprefix("torch."),
        "few_row_kernel": bool(wiring and wiring.few_rows_ready),
    }


def machine_key() -> dict:
    return {
        "cpu": cpu_model(),
        "isa": list(isa_flags()),
        "torch": str(installed("torch")),
        "transformers": str(installed("transformers")),
        "threads": torch.get_num_threads(),
    }


def cache_file(cache_dir: Path, key: dict) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return cache_dir / FOLDER / f"{digest}.json"


def read_cache(cache_dir: Path, key: dict) -> tuple[Verdict, ...] | None:
    """The verdicts cached for `key`, or None: none cached, or a file unreadable, corrupt or for another key
    (one log line, and the caller measures again and overwrites it)."""
    path = cache_file(cache_dir, key)
    if not path.exists():
        return None
    try:
        stored = json.loads(path.read_text())
        if stored["key"] != key:
            raise ValueError("it was written for another machine, library or model")
        return tuple(_verdict(entry) for entry in stored["verdicts"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        log.warning("ignoring the speed-path choice cached in %s (%s); measuring again", path, error)
        return None


def _verdict(entry: dict) -> Verdict:
    workloads = tuple((str(name), float(plain), float(fast)) for name, plain, fast in entry.get("workloads", ()))
    path, lone_only = SpeedPath(entry["path"]), bool(entry.get("lone_only", False))
    return Verdict(path, bool(entry["on"]), Why(entry["why"]), workloads, lone_only=lone_only)


def write_cache(cache_dir: Path, key: dict, chosen: SpeedPaths) -> None:
    path = cache_file(cache_dir, key)
    entries = [{**asdict(v), "path": str(v.path), "why": str(v.why)} for v in chosen.verdicts]
    record = {"key": key, "verdicts": entries, "seconds": round(chosen.seconds, 2), "when": time.time()}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".tmp")
        partial.write_text(json.dumps(record, indent=1))
        partial.replace(path)  # whole or not at all, for a process starting beside this one
    except OSError as error:  # a read-only cache: the next start measures again, no worse
        log.warning("could not keep the speed-path choice in %s (%s); the next start measures again", path, error)


def cached_for_this_machine(cache_dir: Path) -> list[tuple[dict, tuple[Verdict, ...]]]:
    """Every choice cached for this CPU, these libraries and this thread count (any models and dtypes), for
    `clipchat doctor`; unreadable files are skipped."""
    here, found = machine_key(), []
    for path in sorted((cache_dir / FOLDER).glob("*.json")):
        try:
            stored = json.loads(path.read_text())
            key = stored["key"]
            if key.get("format") == FORMAT and all(key.get(name) == value for name, value in here.items()):
                found.append((key, tuple(_verdict(entry) for entry in stored["verdicts"])))
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            continue
    return found
