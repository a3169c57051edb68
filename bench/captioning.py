"""Captioning throughput and latency: clipchat against the pipelines users would otherwise run.

    python -m bench [--json PATH] [--photos 64] [--repeats 5] [--dtypes float32 bfloat16] [--poisson]

What makes the comparison fair:

- matched dtypes: every pipeline runs in float32, then every pipeline in bfloat16 (where the
  CPU multiplies it natively); ratios only ever compare rows of one dtype. clipchat with CLIP
  kept in float32 beside a bfloat16 GPT-2 is one more row, outside the ratios: what `auto` ran
  before CLIP followed the dtype too, so each run shows what that choice is worth on its CPU;
- each baseline twice, as shipped and at its best (`bench/pipelines.py`);
- the same serving for all: JPEG bytes in, the bot's micro-batcher, one model thread, the
  same warm-up and the same batching wait (`bench/harness.py`);
- repeats: each repeat runs every pipeline once, in turn, so drift hits all of them alike;
  medians with the range over repeats, ratios taken within a repeat;
- FLOPs counted with attention included (`bench/flops.py`); efficiency is the least time
  the work could take at this machine's matmul rate for each dtype used, over the time taken;
- the bfloat16 rows use the float32 rows' weights, and the run prints how many captions
  bfloat16 changed;
- decoding timed on its own, on the same photos (`bench/photo_decoding.py`): each row's
  "decode ms" is its way of decoding (every pixel, or `load_image`'s draft), while its
  photos/s and latencies still include decoding, as users wait for it.

Weights are random (real-size ViT-B/32, GPT-2 124M, CoCa ViT-B/32, ViT-B/16 + GPT-2) and
every caption is 20 tokens, so no download is needed and every pipeline does the same work.
"""

from __future__ import annotations

import json
import os
import platform
from concurrent.futures import Executor

import torch

from bot.core.settings import BotSettings
from bot.engine.batcher import model_thread
from vision.catalog.devices import cpu_has_fast_bf16, cpu_model, isa_flags
from vision.fast.calibration import describe_verdict

from . import harness
from .flops import ceiling_seconds, count_flops, matmul_rate
from .photo_decoding import decode_figures, describe
from .pipelines import BASELINES, TOKENS, Pipeline, clipchat, jpeg_photos
from .tokens import caption_tokens, compare_tokens, same_weights

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
POISSON_LOAD = 0.6  # the Poisson rate, as a share of the slowest best-configured pipeline's capacity


def default_dtypes() -> list[str]:
    return ["float32", "bfloat16"] if cpu_has_fast_bf16() else ["float32"]


def _build(dtype_name: str, thread: Executor) -> list[Pipeline]:
    dtype = DTYPES[dtype_name]
    rows = [thread.submit(clipchat, "cpu", dtype).result()]
    if dtype == torch.bfloat16:  # CLIP in float32 beside it: what CLIP in bfloat16 gains on this CPU
        rows.append(thread.submit(clipchat, "cpu", dtype, torch.float32).result())
    return rows + [thread.submit(build, "cpu", dtype).result() for build in BASELINES]


def _flops(pipeline: Pipeline, photo: bytes, thread: Executor) -> dict[str, float]:
    """FLOPs of one photo, by the dtype they run in."""
    item = pipeline.prepare(photo)
    total = thread.submit(count_flops, lambda: pipeline.process([item])).result()
    models = pipeline.parts.get("models")
    if models is None or models.encoder.dtype == DTYPES[pipeline.dtype]:
        return {pipeline.dtype: total}
    encoder = models.encoder
    image = thread.submit(count_flops, lambda: encoder.embed_pixels(encoder.pixels_from([item]))).result()
    return {str(encoder.dtype).removeprefix("torch."): image, pipeline.dtype: total - image}


def _row(pipeline: Pipeline, flops: dict[str, float]) -> dict:
    return {
        "system": pipeline.system,
        "config": pipeline.config,
        "dtype": pipeline.dtype,
        "decoder": pipeline.decoder,
        "flops_per_photo": sum(flops.values()),
        "flops_by_dtype": flops,
        "runs": {},
    }


def _section(dtype_name: str, photos: list[bytes], args: dict, rates: dict, thread: Executor, log) -> tuple:
    pipelines = _build(dtype_name, thread)
    rows = {}
    for pipeline in pipelines:
        harness.warm_up(pipeline, photos, thread)
        rows[pipeline.name] = _row(pipeline, _flops(pipeline, photos[0], thread))
    burst, lone, wait = f"c{args['clients']}", "c1", args["max_wait"]
    for repeat in range(args["repeats"]):
        for pipeline in pipelines:
            runs = rows[pipeline.name]["runs"]
            runs.setdefault(burst, []).append(harness.closed_loop(pipeline, photos, args["clients"], thread, wait))
            runs.setdefault(lone, []).append(harness.closed_loop(pipeline, photos[: args["lone"]], 1, thread, wait))
            sample = runs[burst][-1]
            log(
                f"{dtype_name} repeat {repeat + 1}/{args['repeats']} {pipeline.name:>28} {burst} "
                f"{sample.photos_per_s:6.2f} photos/s, c1 p50 {runs[lone][-1].p50_ms:6.0f} ms"
            )
    if args["poisson"]:
        _poisson(pipelines, rows, photos, args, thread, log)
    section = {"rows": {name: _summarise(row, rates, burst) for name, row in rows.items()}}
    section["ratios"] = _ratios(rows, burst, lone)
    return section, {p.name: p.parts["models"] for p in pipelines if p.system == "clipchat"}


def _poisson(pipelines: list[Pipeline], rows: dict, photos: list[bytes], args: dict, thread, log) -> None:
    burst = f"c{args['clients']}"
    capacity = {
        p.name: harness.spread([s.photos_per_s for s in rows[p.name]["runs"][burst]])["median"] for p in pipelines
    }
    best = [
        name for name, row in rows.items() if row["system"] == "clipchat" or not row["config"].startswith("as shipped")
    ]
    rate = args["rate"] or POISSON_LOAD * min(capacity[name] for name in best)
    for pipeline in pipelines:
        if capacity[pipeline.name] < 1.1 * rate:  # it cannot keep up: its queue would only grow
            rows[pipeline.name]["poisson_skipped"] = f"capacity {capacity[pipeline.name]:.2f} photos/s < {rate:.2f}"
    for repeat in range(args["repeats"]):
        for pipeline in pipelines:
            if "poisson_skipped" in rows[pipeline.name]:
                continue
            sample = harness.poisson(pipeline, photos, rate, thread, args["max_wait"], seed=repeat)
            rows[pipeline.name]["runs"].setdefault("poisson", []).append(sample)
            log(
                f"poisson {rate:.2f}/s repeat {repeat + 1} {pipeline.name:>28} p50 {sample.p50_ms:6.0f} ms "
                f"p95 {sample.p95_ms:6.0f} ms"
            )
    for row in rows.values():
        row["poisson_rate"] = rate


def _summarise(row: dict, rates: dict, burst: str) -> dict:
    out = {key: value for key, value in row.items() if key != "runs"}
    ceiling = ceiling_seconds(row["flops_by_dtype"], rates)
    for mode, samples in row["runs"].items():
        out[mode] = {
            "photos_per_s": harness.spread([s.photos_per_s for s in samples]),
            "p50_ms": harness.spread([s.p50_ms for s in samples]),
            "p95_ms": harness.spread([s.p95_ms for s in samples]),
        }
        if mode == burst:  # the mode that keeps the models busy
            out[mode]["efficiency"] = harness.spread([ceiling * s.photos_per_s for s in samples])
    return out


def _ratios(rows: dict, burst: str, lone: str) -> dict:
    """clipchat over each baseline of the same dtype, taken within each repeat."""
    ours = rows["clipchat"]["runs"]
    out = {}
    for name, row in rows.items():
        if row["system"] == "clipchat":
            continue
        theirs = row["runs"]
        out[name] = {
            "throughput": harness.spread([a.photos_per_s / b.photos_per_s for a, b in zip(ours[burst], theirs[burst])]),
            "c1_p50_latency": harness.spread([a.p50_ms / b.p50_ms for a, b in zip(ours[lone], theirs[lone])]),
        }
    return out


def run(
    photos: int = 64,
    repeats: int = 5,
    clients: int = 16,
    lone: int = 8,
    dtypes: list[str] | None = None,
    poisson: bool = False,
    rate: float | None = None,
    log=print,
) -> dict:
    from transformers.utils import logging as transformers_logging

    transformers_logging.set_verbosity_error()  # generate's attention-mask advice, once per batch
    dtypes = dtypes or default_dtypes()
    jpegs = jpeg_photos(photos)
    # Everything runs on one model thread, as in the bot: each thread that runs PyTorch gets its own
    # OpenMP team, and a second busy team measured 40-50% slower on 2 cores.
    thread = model_thread("bench")
    args = {
        "photos": photos,
        "repeats": repeats,
        "clients": clients,
        "lone": lone,
        "poisson": poisson,
        "rate": rate,
        "max_wait": BotSettings.model_fields["max_wait_ms"].default / 1000,
        "tokens": TOKENS,
    }
    rates = {name: thread.submit(matmul_rate, DTYPES[name]).result() for name in {"float32", *dtypes}}
    results: dict = {"machine": machine(rates), "settings": dict(args), "sections": {}}
    reference = None  # float32 clipchat: its weights and its captions
    for dtype_name in dtypes:
        section, models = _section(dtype_name, jpegs, args, rates, thread, log)
        section["speed_paths"] = {name: m.speed_paths.as_dict() for name, m in models.items() if m.speed_paths}
        results["sections"][dtype_name] = section
        if "decode_ms_per_photo" not in results:  # the same for every dtype: once, on the model thread, alone
            encoder = next(iter(models.values())).encoder
            results["decode_ms_per_photo"] = thread.submit(
                decode_figures, jpegs, encoder, "cpu", os.cpu_count()
            ).result()
        for name, candidate in models.items():
            tokens = thread.submit(caption_tokens, candidate, jpegs).result()
            if dtype_name == "float32":
                reference = (candidate, tokens)
            elif reference is not None:
                results.setdefault("against_float32", {})[f"{dtype_name}/{name}"] = {
                    "same_weights": same_weights(reference[0], candidate),
                    **compare_tokens(reference[1], tokens),
                }
    thread.shutdown()
    return results


def machine(rates: dict[str, float]) -> dict:
    """What a reader needs to tell which machine gave the figures: the CPU's model string (not `x86_64`), the
    ISA features the speed paths and bfloat16 hang on, the libraries, cores and threads."""
    import transformers

    return {
        "cpu": cpu_model(),
        "architecture": platform.machine(),
        "isa": list(isa_flags()),
        "cores": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "libraries": {
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "python": platform.python_version(),
        },
        "matmul_flops": rates,
    }


def header(machine: dict) -> list[str]:
    """The report's first lines: the machine, as `machine` records it."""
    ceilings = ", ".join(f"{name} {rate / 1e9:.0f}" for name, rate in sorted(machine["matmul_flops"].items()))
    libraries = ", ".join(f"{name} {version}" for name, version in machine["libraries"].items())
    return [
        f"{machine['cpu']} ({machine['architecture']}; {' '.join(machine['isa']) or 'no AVX2'}), "
        f"{machine['cores']} cores, {machine['threads']} threads; matmul GFLOP/s: {ceilings}",
        libraries,
    ]


def _spread(values: dict, spec: str) -> str:
    return f"{values['median']:{spec}} [{values['min']:{spec}}-{values['max']:{spec}}]"


def report(results: dict, log=print) -> None:
    machine, settings = results["machine"], results["settings"]
    burst = f"c{settings['clients']}"
    log("")
    for line in header(machine):
        log(line)
    log(
        f"{settings['repeats']} repeats of {settings['photos']} JPEG photos, {settings['tokens']}-token captions, "
        f"the bot's {settings['max_wait'] * 1000:.0f} ms batching wait. Medians [min-max over repeats]."
    )
    decoding = results.get("decode_ms_per_photo")
    if decoding:
        log("")
        for line in describe(decoding):
            log(line)
    for dtype_name, section in results["sections"].items():
        log(f"\n== every pipeline in {dtype_name} ==")
        for name, paths in section.get("speed_paths", {}).items():
            how = "cached" if paths["cached"] else f"measured in {paths['seconds']:.1f} s"
            log(f"{name}'s speed paths ({paths['mode']}, {how}):")
            for verdict in paths["paths"].values():
                log(f"  {describe_verdict(verdict)}")
        log(
            f"{'pipeline':<22}{'configuration':<42}{burst + ' photos/s':>22}{burst + ' p95 ms':>22}"
            f"{'c1 p50 ms':>20}{'GFLOP':>7}{'efficiency':>24}{'decode ms':>11}"
        )
        for row in section["rows"].values():
            runs = row[burst]
            decode_ms = (decoding or {}).get(row.get("decoder"), {}).get("decode_ms")
            log(
                f"{row['system']:<22}{row['config']:<42}{_spread(runs['photos_per_s'], '.2f'):>22}"
                f"{_spread(runs['p95_ms'], '.0f'):>22}{_spread(row['c1']['p50_ms'], '.0f'):>20}"
                f"{row['flops_per_photo'] / 1e9:7.1f}{_spread(runs['efficiency'], '.1%'):>24}"
                f"{'n/a' if decode_ms is None else f'{decode_ms:.1f}':>11}"
            )
        for row in section["rows"].values():
            if "poisson" in row:
                log(
                    f"Poisson arrivals at {row['poisson_rate']:.2f}/s: {row['system']} ({row['config']}): "
                    f"p50 {_spread(row['poisson']['p50_ms'], '.0f')} ms, p95 {_spread(row['poisson']['p95_ms'], '.0f')} ms"
                )
            elif "poisson_skipped" in row:
                log(
                    f"Poisson arrivals at {row['poisson_rate']:.2f}/s: {row['system']} ({row['config']}) cannot keep "
                    f"up ({row['poisson_skipped']})"
                )
        for name, ratio in section["ratios"].items():
            row = section["rows"][name]
            log(
                f"clipchat vs {row['system']} ({row['config']}): throughput {_spread(ratio['throughput'], '.1f')}x, "
                f"lone-photo latency {_spread(ratio['c1_p50_latency'], '.2f')}x"
            )
    for name, check in results.get("against_float32", {}).items():
        log(
            f"\n{name} on the float32 weights ({'identical' if check['same_weights'] else 'NOT the same'} after "
            f"casting): {check['captions_changed']:.0%} of {check['captions']} captions changed, "
            f"{check['tokens_changed']:.1%} of tokens, first change at token {check['median_first_change']} (median). "
            "Random weights give flat logits, where small changes flip the argmax most easily."
        )


def dump(results: dict, path) -> None:
    path.write_text(json.dumps(results, indent=2))
