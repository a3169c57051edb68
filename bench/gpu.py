"""GPU throughput: photos/s at batch 1, 16, 64 and 256 in float16 and bfloat16, against the same baselines.

    python -m bench.gpu [--json PATH] [--batches 1 16 64 256] [--dtypes float16 bfloat16]

Run it as one command on the device machine. The same random-weight, real-size
architectures as `python -m bench` (ViT-B/32 + GPT-2 124M for clipchat; ClipCap's
recompute loop at batch 1; CoCa ViT-B/32; ViT-B/16 + GPT-2 VisionEncoderDecoder),
20-token captions. Two figures per row:

- end to end: from Pillow photos (resize and normalise in the timing, on worker threads as the bot does);
- models: from preprocessed pixels already on the GPU, the accelerator's own rate.

`--device cpu --batches 1 2 --dtypes float32` checks the script itself on a CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

from .captioning import (
    TOKENS,
    build_clipchat,
    clipcap_reference,
    coca_pipeline,
    photos,
    vision_encoder_decoder_pipeline,
)

DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}


def rate(run, batch: list, device: str, min_seconds: float = 2.0) -> float:
    """Photos per second for `run(batch)`, repeated for at least `min_seconds` after a warm-up."""
    run(batch)
    _sync(device)
    repeats, started = 0, time.perf_counter()
    while True:
        run(batch)
        repeats += 1
        _sync(device)
        elapsed = time.perf_counter() - started
        if elapsed >= min_seconds:
            return repeats * len(batch) / elapsed


def _lazy(build):
    built = []

    def run(batch):
        if not built:
            built.append(build())
        return built[0](batch)
    return run


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def measure(device: str, dtype_name: str, batches: list[int], log=print) -> dict:
    from vision.decoding import DecodingOptions

    dtype = DTYPES[dtype_name]
    images = photos(max(batches))
    options = DecodingOptions(max_tokens=TOKENS)
    models = build_clipchat(device, dtype)
    pixels = models.encoder.preprocess_images(images).to(device)
    # as the bot does: Pillow's half of preprocessing on worker threads, the tensor half with the models
    pool = ThreadPoolExecutor(max_workers=os.cpu_count())
    prepare = models.encoder.prepare
    # baselines are built on first use, so one that fails to build fails only its own rows
    coca = _lazy(lambda: coca_pipeline(device, dtype))
    encoder_decoder = _lazy(lambda: vision_encoder_decoder_pipeline(device, dtype))
    pipelines = {
        "clipchat": (lambda batch: models.describe_pixels(models.encoder.pixels_from(list(pool.map(prepare, batch))),
                                                          options),
                     lambda n: models.describe_pixels(pixels[:n], options)),
        "clipcap_ref": (clipcap_reference(models), None),
        "coca": (coca, None),
        "vision_encoder_decoder": (encoder_decoder, None),
    }
    figures: dict = {}
    for name, (end_to_end, models_only) in pipelines.items():
        for batch in batches:
            if name == "clipcap_ref" and batch > 1:
                continue  # its predict.py captions one photo at a time
            try:
                row = {"end_to_end": rate(end_to_end, images[:batch], device)}
                if models_only is not None:
                    row["models"] = rate(lambda n: models_only(len(n)), images[:batch], device)
            except (RuntimeError, torch.cuda.OutOfMemoryError) as error:
                # one device run is all there is: a failing row is reported and the others still measured
                log(f"{dtype_name:>9} {name:>24} b{batch:<4} failed: {error!r}")
                figures[f"{name}_b{batch}"] = {"error": repr(error)}
                traceback.print_exc()
                if device.startswith("cuda"):
                    torch.cuda.empty_cache()
                continue
            figures[f"{name}_b{batch}"] = row
            extra = f"   models {row['models']:8.1f}" if "models" in row else ""
            log(f"{dtype_name:>9} {name:>24} b{batch:<4} {row['end_to_end']:8.1f} photos/s{extra}")
    if device.startswith("cuda"):
        figures["peak_memory_mb"] = torch.cuda.max_memory_allocated() / 2**20
        torch.cuda.reset_peak_memory_stats()
    best = max(batches)
    ours = figures[f"clipchat_b{best}"].get("end_to_end")
    for baseline, key in (("coca", f"coca_b{best}"), ("vision_encoder_decoder", f"vision_encoder_decoder_b{best}"),
                          ("clipcap_ref", "clipcap_ref_b1")):
        theirs = figures[key].get("end_to_end")
        figures[f"ratio_vs_{baseline}_b{best}"] = ours / theirs if ours and theirs else None
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.gpu")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 16, 64, 256])
    parser.add_argument("--dtypes", nargs="+", default=["float16", "bfloat16"], choices=sorted(DTYPES))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error("no CUDA device here; use --device cpu to check the script")
    torch.backends.cuda.matmul.allow_tf32 = True
    results = {"device": torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu",
               "torch": torch.__version__}
    for dtype_name in args.dtypes:
        results[dtype_name] = measure(args.device, dtype_name, args.batches)
        best = max(args.batches)
        ratios = {name: results[dtype_name][f"ratio_vs_{name}_b{best}"]
                  for name in ("vision_encoder_decoder", "coca", "clipcap_ref")}
        shown = {name: "n/a" if ratio is None else f"{ratio:.1f}x" for name, ratio in ratios.items()}
        print(f"{dtype_name}: at batch {best}, clipchat is {shown['vision_encoder_decoder']} VisionEncoderDecoder, "
              f"{shown['coca']} CoCa, {shown['clipcap_ref']} the ClipCap reference at batch 1", flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
