"""GPU throughput: photos/s at batch 1, 16, 64 and 256 in float16 and bfloat16, against the same baselines.

    python -m bench.gpu [--json PATH] [--batches 1 16 64 256] [--dtypes float16 bfloat16]

Run it as one command on the device machine. The same random-weight, real-size
architectures as `python -m bench` (ViT-B/32 + GPT-2 124M for clipchat; ClipCap's
recompute loop at batch 1; CoCa ViT-B/32; ViT-B/16 + GPT-2 VisionEncoderDecoder),
20-token captions. Two figures per row:

- end to end: from Pillow photos (decode, resize and normalise in the timing, as the bot pays them);
- models: from preprocessed pixels already on the GPU, the accelerator's own rate.

`--device cpu --batches 1 2 --dtypes float32` checks the script itself on a CPU.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from .captioning import (TOKENS, build_clipchat, clipcap_reference, coca_pipeline, photos,
                         vision_encoder_decoder_pipeline)

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
    pipelines = {
        "clipchat": (lambda batch: models.describe(batch, options),
                     lambda n: models.describe_pixels(pixels[:n], options)),
        "clipcap_ref": (clipcap_reference(models), None),
        "coca": (coca_pipeline(device, dtype), None),
        "vision_encoder_decoder": (vision_encoder_decoder_pipeline(device, dtype), None),
    }
    figures: dict = {}
    for name, (end_to_end, models_only) in pipelines.items():
        for batch in batches:
            if name == "clipcap_ref" and batch > 1:
                continue  # its predict.py captions one photo at a time
            row = {"end_to_end": rate(end_to_end, images[:batch], device)}
            if models_only is not None:
                row["models"] = rate(lambda n: models_only(len(n)), images[:batch], device)
            figures[f"{name}_b{batch}"] = row
            extra = f"   models {row['models']:8.1f}" if "models" in row else ""
            log(f"{dtype_name:>9} {name:>24} b{batch:<4} {row['end_to_end']:8.1f} photos/s{extra}")
    if device.startswith("cuda"):
        figures["peak_memory_mb"] = torch.cuda.max_memory_allocated() / 2**20
        torch.cuda.reset_peak_memory_stats()
    best = max(batches)
    for baseline in ("coca", "vision_encoder_decoder"):
        figures[f"ratio_vs_{baseline}_b{best}"] = (figures[f"clipchat_b{best}"]["end_to_end"]
                                                  / figures[f"{baseline}_b{best}"]["end_to_end"])
    figures[f"ratio_vs_clipcap_ref_b{best}"] = (figures[f"clipchat_b{best}"]["end_to_end"]
                                               / figures["clipcap_ref_b1"]["end_to_end"])
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
        print(f"{dtype_name}: at batch {best}, clipchat is "
              f"{results[dtype_name][f'ratio_vs_vision_encoder_decoder_b{best}']:.1f}x VisionEncoderDecoder, "
              f"{results[dtype_name][f'ratio_vs_coca_b{best}']:.1f}x CoCa, "
              f"{results[dtype_name][f'ratio_vs_clipcap_ref_b{best}']:.1f}x the ClipCap reference at batch 1")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
