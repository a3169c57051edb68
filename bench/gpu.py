"""GPU throughput: photos/s at batch 1, 16, 64 and 256 in float16 and bfloat16, against the same baselines.

    python -m bench.gpu [--json PATH] [--batches 1 16 64 256] [--dtypes float16 bfloat16]

Run it as one command on the device machine. The same random-weight, real-size
architectures and pipelines as `python -m bench` (bench/pipelines.py: clipchat, and each
baseline as shipped and at its best), every pipeline in the same dtype, 20-token captions.
`clipchat_graphs` is clipchat with DecodingOptions(graphs=True): CLIP's tower and each greedy
step at fixed batch sizes, replayed as CUDA graphs (vision/fast/graphs.py). Figures per row:

- end to end: from JPEG bytes (decoding and resizing in the timing, on worker threads as the bot does);
- models: from preprocessed pixels already on the GPU, the accelerator's own rate;
- p50_ms: the median call's milliseconds per photo, end to end (at batch 1, one photo's latency);
- peak_memory_mb (on a GPU): torch.cuda.max_memory_allocated since the pipeline was built.

Decoding: on a GPU, clipchat and every best-configured baseline decode and resize their JPEGs on the
device (vision/gpu_intake, through bench.pipelines.on_device_decoding), so the ratios compare like with
like; the as-shipped baselines decode every pixel with Pillow, as their code does; `clipchat_pillow` is
clipchat with Pillow's draft on worker threads (the bot's path before), for comparison.
`--device-decoding` turns the same on for a CPU run (torchvision's CPU decoder), to check that path;
`--no-device-decoding` turns it off on a GPU. `decode_ms_per_photo` times each way of decoding on the
same photos (bench/photo_decoding.py), apart from the rows, whose end-to-end figures include decoding.

`--device cpu --batches 1 2 --dtypes float32` checks the script itself on a CPU.
"""

from __future__ import annotations

import argparse
import functools
import gc
import json
import os
import statistics
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import torch

from .photo_decoding import decode_figures, describe
from .pipelines import BASELINES, Pipeline, clipchat, clipchat_graphs, decode, jpeg_photos, on_device_decoding

RATIO_BASELINES = (
    "clipcap_ref",
    "clipcap_best",
    "coca",
    "coca_best",
    "vision_encoder_decoder",
    "vision_encoder_decoder_best",
)
DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}


def rate(run, batch: list, device: str, min_seconds: float = 2.0) -> tuple[float, float]:
    """(photos per second, median milliseconds per photo) for `run(batch)`, repeated for at least
    `min_seconds` after a warm-up (which also captures the CUDA graphs of a graphs row)."""
    run(batch)
    _sync(device)
    calls, started = [], time.perf_counter()
    while True:
        began = time.perf_counter()
        run(batch)
        _sync(device)
        calls.append(time.perf_counter() - began)
        elapsed = time.perf_counter() - started
        if elapsed >= min_seconds:
            return len(calls) * len(batch) / elapsed, statistics.median(calls) / len(batch) * 1000


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _decoding(builds, on: bool) -> list:
    """The builders as measured: with `on`, clipchat and every best-configured baseline decode their JPEGs
    on the device, and a `clipchat_pillow` row keeps Pillow on the workers for comparison."""
    if not on:
        return list(builds)

    def on_device(build):
        @functools.wraps(build)
        def built(device: str, dtype: torch.dtype) -> Pipeline:
            pipeline = build(device, dtype)
            return on_device_decoding(pipeline) if pipeline.decoder == "pillow_draft" else pipeline

        return built

    def clipchat_pillow(device: str, dtype: torch.dtype) -> Pipeline:
        return replace(clipchat(device, dtype), name="clipchat_pillow")

    out = []
    for build in builds:
        out += [on_device(build), clipchat_pillow] if build is clipchat else [on_device(build)]
    return out


def measure(device: str, dtype_name: str, batches: list[int], log=print, device_decoding: bool | None = None) -> dict:
    dtype = DTYPES[dtype_name]
    photos = jpeg_photos(max(batches))
    device_decoding = device.startswith("cuda") if device_decoding is None else device_decoding
    # as the bot does: decoding and Pillow's half of preprocessing on worker threads
    pool = ThreadPoolExecutor(max_workers=os.cpu_count())
    figures: dict = {}
    for build in _decoding((clipchat, clipchat_graphs, *BASELINES), device_decoding):
        if device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()  # each row's peak: its own weights, buffers and graphs
        try:  # one device run is all there is: a pipeline that fails is reported and the others still measured
            pipeline: Pipeline = build(device, dtype)
        except (RuntimeError, torch.cuda.OutOfMemoryError) as error:
            log(f"{dtype_name:>9} {getattr(build, '__name__', build)} failed to build: {error!r}")
            traceback.print_exc()
            continue
        models_only = None
        if pipeline.system == "clipchat":
            models = pipeline.parts["models"]
            pixels = models.encoder.preprocess_images([decode(data) for data in photos])
            pixels = pixels.to(device)
            decoding = pipeline.parts["decoding"]  # the engine's: with or without graphs

            def models_only(batch, m=models, px=pixels, o=decoding):
                return m.describe_pixels(px[: len(batch)], o)

        end_to_end = lambda batch, p=pipeline: p.process(list(pool.map(p.prepare, batch)))  # noqa: E731
        for batch in batches:
            if pipeline.max_batch == 1 and batch > 1:
                continue  # ClipCap's predict.py captions one photo at a time
            key = f"{pipeline.name}_b{batch}"
            try:
                row = dict(zip(("end_to_end", "p50_ms"), rate(end_to_end, photos[:batch], device)))
                if models_only is not None:
                    row["models"] = rate(models_only, photos[:batch], device)[0]
                if device.startswith("cuda"):
                    row["peak_memory_mb"] = torch.cuda.max_memory_allocated() / 2**20
            except (RuntimeError, torch.cuda.OutOfMemoryError) as error:
                log(f"{dtype_name:>9} {pipeline.name:>28} b{batch:<4} failed: {error!r}")
                figures[key] = {"error": repr(error)}
                traceback.print_exc()
                if device.startswith("cuda"):
                    torch.cuda.empty_cache()
                continue
            figures[key] = row
            extra = f"   models {row['models']:8.1f}" if "models" in row else ""
            extra += f"   peak {row['peak_memory_mb']:7.0f} MiB" if "peak_memory_mb" in row else ""
            log(
                f"{dtype_name:>9} {pipeline.name:>28} b{batch:<4} {row['end_to_end']:8.1f} photos/s "
                f"p50 {row['p50_ms']:8.2f} ms/photo{extra}"
            )
        del pipeline, models_only, end_to_end
        gc.collect()  # a graphs row's captured graphs and static caches go with its models
        if device.startswith("cuda"):
            torch.cuda.empty_cache()
    if device.startswith("cuda"):
        figures["peak_memory_mb"] = max((row.get("peak_memory_mb", 0) for row in figures.values()), default=0)
    eager, graphed = (figures.get(f"{name}_b1", {}).get("p50_ms") for name in ("clipchat", "clipchat_graphs"))
    figures["graphs_speedup_b1_p50"] = eager / graphed if eager and graphed else None
    best = max(batches)
    ours = figures.get(f"clipchat_b{best}", {}).get("end_to_end")
    for name in RATIO_BASELINES:
        theirs = figures.get(f"{name}_b{1 if name == 'clipcap_ref' else best}", {}).get("end_to_end")
        figures[f"ratio_vs_{name}"] = ours / theirs if ours and theirs else None
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.gpu")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 16, 64, 256])
    parser.add_argument("--dtypes", nargs="+", default=["float16", "bfloat16"], choices=sorted(DTYPES))
    parser.add_argument("--json", type=Path)
    parser.add_argument(
        "--device-decoding",
        action=argparse.BooleanOptionalAction,
        help="decode JPEGs on the device for clipchat and the best baselines (default: on a GPU)",
    )
    args = parser.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error("no CUDA device here; use --device cpu to check the script")
    torch.backends.cuda.matmul.allow_tf32 = True
    results = {
        "device": torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu",
        "torch": torch.__version__,
    }
    from .pipelines import build_models

    encoder = build_models(args.device, tags=False).encoder  # its preprocessing: ViT-B/32's 224-pixel crop
    results["decode_ms_per_photo"] = decode_figures(
        jpeg_photos(max(args.batches)), encoder, args.device, os.cpu_count()
    )
    del encoder
    print("\n".join(describe(results["decode_ms_per_photo"])), flush=True)
    for dtype_name in args.dtypes:
        results[dtype_name] = measure(args.device, dtype_name, args.batches, device_decoding=args.device_decoding)
        shown = ", ".join(
            f"{name} {'n/a' if ratio is None else f'{ratio:.1f}x'}"
            for name in RATIO_BASELINES
            for ratio in [results[dtype_name][f"ratio_vs_{name}"]]
        )
        print(
            f"{dtype_name}: clipchat at batch {max(args.batches)} against each at the same batch "
            f"(clipcap_ref at batch 1): {shown}",
            flush=True,
        )
        speedup = results[dtype_name]["graphs_speedup_b1_p50"]
        if speedup is not None:
            what = "CUDA graphs" if args.device.startswith("cuda") else "graphs=True (uncaptured on a CPU)"
            print(
                f"{dtype_name}: {what} at batch 1, p50 per photo end to end: "
                f"{results[dtype_name]['clipchat_graphs_b1']['p50_ms']:.1f} ms against "
                f"{results[dtype_name]['clipchat_b1']['p50_ms']:.1f} ms eager ({speedup:.2f}x)",
                flush=True,
            )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
