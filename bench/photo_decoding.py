"""How long turning the benchmark's JPEGs into pixels takes, by each way the pipelines do it.

    python -m bench.photo_decoding [--photos 64] [--device cpu|cuda] [--threads N]

Measured on the same photos as the throughput runs, apart from them (the end-to-end figures
include decoding as well), in milliseconds per photo:

- `pillow_full`: Pillow decodes every pixel (`bench.pipelines.decode`), as the baselines' own code does;
- `pillow_draft`: clipchat's `load_image`, which decodes a large JPEG at 1/2, 1/4 or 1/8 of its size
  (`draft`) and shrinks by whole factors before converting; the best-configured baselines use it too;
- `device`: `vision.intake.device_jpeg`, the whole batch decoded by `torchvision.io.decode_jpeg` on the
  device (`--device cpu`: torchvision's CPU decoder, to check the script) and resized there.

Two figures each: `decode_ms` (bytes to RGB pixels at whatever size the decoder gives) and
`to_crop_ms` (bytes to CLIP's 224-pixel crop, resizing included). Pillow runs one photo at a time
on one thread, and again on `threads` worker threads (`pool_to_crop_ms`: wall time over the photos,
as the bot's decoding threads share the work); the device path times one batch of all the photos.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor

import torch

from vision.intake.device_jpeg import DeviceIntake
from vision.intake.images import load_image

from .pipelines import decode


def _per_photo_ms(work: Callable[[bytes], object], photos: Sequence[bytes], repeats: int = 2) -> float:
    work(photos[0])  # warm-up
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        for data in photos:
            work(data)
        best = min(best, time.perf_counter() - started)
    return 1000 * best / len(photos)


def _pool_ms(work: Callable[[bytes], object], photos: Sequence[bytes], pool: Executor) -> float:
    list(pool.map(work, photos[:8]))  # warm-up
    started = time.perf_counter()
    list(pool.map(work, photos))
    return 1000 * (time.perf_counter() - started) / len(photos)


def _batch_ms(work: Callable[[], object], count: int, device: torch.device, repeats: int = 3) -> float:
    def timed() -> float:
        started = time.perf_counter()
        work()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - started

    timed()  # warm-up: the decoder's handles and buffers
    return 1000 * min(timed() for _ in range(repeats)) / count


def decode_figures(photos: Sequence[bytes], encoder, device: str | torch.device, threads: int = 0) -> dict:
    """Milliseconds per photo for each way of decoding; `encoder` is a ClipEncoder (its preprocessing).
    Run it on the model thread, with nothing else running: it times the CPU."""
    from torchvision.io import ImageReadMode, decode_jpeg

    figures: dict = {
        "photos": len(photos),
        "pillow_full": {
            "decode_ms": _per_photo_ms(decode, photos),
            "to_crop_ms": _per_photo_ms(lambda data: encoder.prepare(decode(data)), photos),
        },
        "pillow_draft": {
            "decode_ms": _per_photo_ms(load_image, photos),
            "to_crop_ms": _per_photo_ms(lambda data: encoder.prepare(load_image(data)), photos),
        },
    }
    if threads:
        figures["threads"] = threads
        with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="decode") as pool:
            for name, open_ in (("pillow_full", decode), ("pillow_draft", load_image)):
                figures[name]["pool_to_crop_ms"] = _pool_ms(
                    lambda data, o=open_: encoder.prepare(o(data)), photos, pool
                )
    intake = DeviceIntake(encoder, device=device)
    where = intake.device
    encoded = [torch.frombuffer(bytearray(data), dtype=torch.uint8) for data in photos]
    figures["device"] = {
        "device": str(where),
        "decode_ms": _batch_ms(lambda: decode_jpeg(encoded, mode=ImageReadMode.RGB, device=where), len(photos), where),
        "to_crop_ms": _batch_ms(lambda: intake.decode([intake.prepare(data) for data in photos]), len(photos), where),
    }
    return figures


def describe(figures: dict) -> list[str]:
    """The figures as lines for a person."""
    pool = f" ({figures.get('threads')} threads: {{pool_to_crop_ms:.2f}})"
    lines = [f"Decoding {figures['photos']} JPEGs, ms per photo: decode / decode and resize to CLIP's crop"]
    for name, label in (
        ("pillow_full", "Pillow, every pixel (baselines as shipped)"),
        ("pillow_draft", "Pillow with draft (clipchat, baselines at their best)"),
    ):
        row = figures[name]
        lines.append(
            f"  {label:<56}{row['decode_ms']:7.2f} / {row['to_crop_ms']:6.2f}"
            + (pool.format(**row) if "pool_to_crop_ms" in row else "")
        )
    row = figures["device"]
    lines.append(
        f"  {'torchvision decode_jpeg on ' + row['device'] + ', one batch':<56}"
        f"{row['decode_ms']:7.2f} / {row['to_crop_ms']:6.2f}"
    )
    return lines


def main() -> None:
    import argparse
    import os

    from .pipelines import build_models, jpeg_photos

    parser = argparse.ArgumentParser(prog="python -m bench.photo_decoding")
    parser.add_argument("--photos", type=int, default=64, help="the benchmark's 1280x960 JPEGs (default 64)")
    parser.add_argument("--device", default="cpu", help="where the device path decodes (default cpu)")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="Pillow's worker threads")
    args = parser.parse_args()
    encoder = build_models(args.device, tags=False).encoder  # ViT-B/32's preprocessing: a 224-pixel crop
    print("\n".join(describe(decode_figures(jpeg_photos(args.photos), encoder, args.device, args.threads))))


if __name__ == "__main__":
    main()
