"""python -m bench.speed_paths: a lone photo with the CPU speed paths as calibrated, all on and all off.

    python -m bench.speed_paths --dtype float32 [--repeats 5]

A lone photo is one CLIP pass and a 20-token greedy caption, on the default set's architectures at random weights
(`bench.pipelines.build_models`), CLIP and GPT-2 in `--dtype`. Three copies of the models: `auto` (each path timed
against the plain one here, into a fresh cache: vision/fast/calibration.py), `all` and `none`; then `--repeats`
interleaved repeats of the three, medians. It prints what the calibration chose and why, how long it took, and
how long a second start takes (from the cache). Minutes, not the full benchmark's hour.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from vision.catalog.devices import cpu_model, isa_flags
from vision.decoding.strategies import DecodingOptions, decode
from vision.pipeline import use_speed_paths

from .pipelines import TOKENS, build_models, jpeg_photos
from .pipelines import decode as decode_jpeg

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
MODES = ("auto", "all", "none")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.speed_paths")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="float32")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    dtype = DTYPES[args.dtype]
    cache = Path(tempfile.mkdtemp(prefix="clipchat-speed-paths-"))
    print(f"{cpu_model()} ({' '.join(isa_flags())}), torch {torch.__version__}, {torch.get_num_threads()} threads")
    models = {}
    for mode in MODES:
        built = build_models(dtype=dtype, clip_dtype=dtype, as_clipchat_loads=False, tags=False)
        started = time.perf_counter()
        paths = use_speed_paths(built.encoder, built.captioner, cache, mode)
        assert paths is not None  # a CPU
        print(f"{mode}: {time.perf_counter() - started:.1f} s to plug in (of which timing {paths.seconds:.1f} s)")
        for line in paths.describe():
            print(f"    {line}")
        models[mode] = built
    pixels = models["auto"].encoder.preprocess_images([decode_jpeg(jpeg_photos(1)[0])])
    options = DecodingOptions(method="greedy", max_tokens=TOKENS)

    def lone(built) -> None:
        with torch.inference_mode():
            raw = built.encoder.embed_pixels(pixels.to(built.encoder.dtype), normalize=False)
            [[caption]] = decode(built.captioner, raw, options)
        assert len(caption.tokens) == TOKENS  # random weights never stop early: the same work each time

    for built in models.values():
        lone(built)  # untimed: oneDNN's primitives, the step's buffers
    times: dict[str, list[float]] = {mode: [] for mode in MODES}
    for repeat in range(args.repeats):
        for mode in MODES if repeat % 2 == 0 else MODES[::-1]:
            started = time.perf_counter()
            lone(models[mode])
            times[mode].append(time.perf_counter() - started)
    for mode, seconds in times.items():
        each = ", ".join(f"{1000 * s:.0f}" for s in seconds)
        print(
            f"{args.dtype} {mode:>4}: median {1000 * statistics.median(seconds):.0f} ms, best {1000 * min(seconds):.0f} [{each}]"
        )
    again = build_models(dtype=dtype, clip_dtype=dtype, as_clipchat_loads=False, tags=False)
    started = time.perf_counter()
    paths = use_speed_paths(again.encoder, again.captioner, cache, "auto")
    print(f"second start: from the cache {paths is not None and paths.cached}, {time.perf_counter() - started:.2f} s")


if __name__ == "__main__":
    main()
