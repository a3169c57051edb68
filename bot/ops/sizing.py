"""`clipchat bench`: how many photos a second this machine serves with the configured models, and the
CLIPCHAT_MAX_BATCH to give it.

The models load as `clipchat run` loads them (`adapter/application`: the model set, device and dtype from the
settings, loaded on the thread that runs them) and every photo takes the bot's own path: `LocalModels`
(the decoding pool, the micro-batcher with CLIPCHAT_MAX_WAIT_MS) and `ModelFeatures.describe` on the model
thread. Users are simulated as a closed loop: each of `concurrency` users sends their next photo when
the last one is answered. The photos are made here, from a fixed seed so every run measures the same
work: 1280x960 JPEGs at quality 85 (Telegram's largest photo size), each a different scene.

Then the answer path (`answer_sizing`): follow-up questions one at a time, time to the first draft and to the
whole answer, and the peak resident memory of the set (`--questions 0` skips it).

`python -m bench` is something else: clipchat's pipeline against reference implementations.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import statistics
import time
from collections.abc import Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image, ImageDraw

from clipchat.errors import InvalidConfig
from clipchat.metrics import batches_run
from vision.catalog.settings import VisionSettings

from ..adapter.application import load_configured_models, serve_locally
from ..core.settings import BotSettings
from ..engine import DescribeRequest, LocalModels
from ..engine.batcher import model_thread
from ..engine.budget import return_large_blocks_to_the_os
from .answer_sizing import answer_lines, measure_answers

SEED = 0
PHOTO_SIZE = (1280, 960)
QUALITY = 85
WITHIN = 0.05  # a batch size this close to the best throughput is as good, and holds less in memory at once


@dataclass(frozen=True)
class Sample:
    concurrency: int
    max_batch: int
    photos_per_s: float
    p50_ms: float
    p95_ms: float
    mean_batch: float  # how full the batches actually were


def add_command(commands: argparse._SubParsersAction) -> None:
    bench = commands.add_parser(
        "bench",
        help="measure photos/s and latency of the configured models on this machine, and suggest CLIPCHAT_MAX_BATCH",
    )
    bench.add_argument("--photos", type=int, default=64, help="photos per measurement (default 64)")
    bench.add_argument(
        "--concurrency",
        type=_counts,
        default=[1, 16],
        metavar="N,N",
        help="users sending photos at once, one row each (default 1,16)",
    )
    bench.add_argument(
        "--questions",
        type=int,
        default=12,
        help="follow-up questions for the answer rows, after 2 to warm up (default 12; 0 skips them)",
    )
    bench.add_argument("--models", metavar="DIR_OR_NAME", help="model set (default: CLIPCHAT_MODELS)")
    bench.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    bench.set_defaults(handler=run_bench)


def _counts(text: str) -> list[int]:
    try:
        counts = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        counts = []
    if not counts or not 1 <= counts[0] <= counts[-1] <= 1024:
        raise argparse.ArgumentTypeError(f"give whole numbers from 1 to 1024, comma-separated, not {text!r}")
    return counts


def run_bench(args: argparse.Namespace, vision_settings: VisionSettings) -> int:
    if args.photos < max(args.concurrency):
        raise InvalidConfig(
            detail=f"--photos ({args.photos}) must be at least the largest --concurrency "
            f"({max(args.concurrency)}): every simulated user needs a photo."
        )
    if args.questions < 0:
        raise InvalidConfig(detail=f"--questions ({args.questions}) must be 0 (no answer rows) or more.")
    if args.models:
        vision_settings = vision_settings.model_copy(update={"models": args.models})
    settings = BotSettings()  # the batching settings the bot would run with; no token needed
    photos = sample_photos(args.photos)
    report = asyncio.run(measure(settings, vision_settings, photos, args.concurrency, args.questions))
    print(json.dumps(report, indent=2) if args.json else "\n".join(table(report)))
    return 0


async def measure(
    settings: BotSettings,
    vision_settings: VisionSettings,
    photos: Sequence[bytes],
    concurrency: Sequence[int],
    questions: int = 0,
) -> dict:
    return_large_blocks_to_the_os()  # as the bot does: it changes how decoded photos' memory is reused
    thread = model_thread("vision")
    try:
        models = await asyncio.get_running_loop().run_in_executor(thread, load_configured_models, vision_settings)

        def served(max_batch: int) -> LocalModels:  # the bot's transport, on the one model thread
            return serve_locally(
                models, settings.model_copy(update={"max_batch": max_batch}), vision_settings, _Lent(thread)
            )

        busiest = max(concurrency)
        batches = sorted({2**k for k in range(11) if 2**k <= busiest} | {min(settings.max_batch, busiest)})
        await _trial(served, batches[-1], photos[:busiest], busiest)  # warm-up: first-call costs, not measured
        rows = [await _trial(served, settings.max_batch, photos, clients) for clients in concurrency]
        sweep = [
            next((row for row in rows if row.concurrency == busiest and row.max_batch == size), None)
            or await _trial(served, size, photos, busiest)
            for size in batches
        ]
        answers = None
        if questions:
            asking = served(settings.max_batch)
            try:
                answers = asdict(await measure_answers(asking, photos, questions))
            finally:
                await asking.close()
    finally:
        thread.shutdown(wait=True)
    suggested, reason = suggest(sweep, settings.max_batch)
    return {
        "models": vision_settings.models,
        "clip": models.encoder.identity,
        "device": str(models.encoder.device),
        "photos": len(photos),
        "photo": f"{PHOTO_SIZE[0]}x{PHOTO_SIZE[1]} JPEG, quality {QUALITY}",
        "configured_max_batch": settings.max_batch,
        "max_wait_ms": settings.max_wait_ms,
        "rows": [asdict(row) for row in rows],
        "batch_sizes": [asdict(row) for row in sweep],
        "suggested_max_batch": suggested,
        "reason": reason,
        "answer_model": str(models.answerer.source),
        "answers": answers,
    }


async def _trial(serve, max_batch: int, photos: Sequence[bytes], clients: int) -> Sample:
    """`clients` users, each sending their share of `photos` one after another; latency is send to answer."""
    models, latencies = serve(max_batch), []

    async def user(mine: Sequence[bytes]) -> None:
        for data in mine:
            sent = time.perf_counter()
            await models.describe(DescribeRequest(data))  # bounded by CLIPCHAT_MODEL_TIMEOUT_S, as in the bot
            latencies.append(time.perf_counter() - sent)

    try:
        before, started = batches_run("describe"), time.perf_counter()
        await asyncio.gather(*(user(photos[i::clients]) for i in range(clients)))
        wall = time.perf_counter() - started
        batches = batches_run("describe").since(before)
    finally:
        await models.close()
    return Sample(
        clients,
        max_batch,
        len(photos) / wall,
        1000 * statistics.median(latencies),
        1000 * float(np.percentile(latencies, 95)),
        batches.mean,
    )


def suggest(sweep: Sequence[Sample], configured: int) -> tuple[int, str]:
    """The smallest batch within WITHIN of the best throughput, and why."""
    best = max(sweep, key=lambda sample: sample.photos_per_s)
    chosen = min((s for s in sweep if s.photos_per_s >= (1 - WITHIN) * best.photos_per_s), key=lambda s: s.max_batch)
    if len(sweep) == 1:
        return chosen.max_batch, (
            "only one user at a time was measured, so batches never form: measure with "
            "--concurrency 1,16 (or your busiest hour's users) to size them."
        )
    why = (
        f"{chosen.photos_per_s:.1f} photos/s at {chosen.concurrency} users, within {WITHIN:.0%} of the best "
        f"measured ({best.photos_per_s:.1f} at batch {best.max_batch}); larger batches buy no more here and "
        "hold more photos in memory at once."
    )
    if chosen.max_batch == best.max_batch:
        why = (
            f"the best throughput measured ({best.photos_per_s:.1f} photos/s at {best.concurrency} users); "
            f"every smaller batch was more than {WITHIN:.0%} slower."
        )
    if configured > sweep[-1].max_batch:
        why += (
            f" Batches above {sweep[-1].max_batch} were not tried: give --concurrency the number of users "
            f"you expect at once to try CLIPCHAT_MAX_BATCH={configured}."
        )
    return chosen.max_batch, why


def table(report: dict) -> list[str]:
    lines = [
        f"clipchat bench: models {report['models']} (CLIP {report['clip']}) on {report['device']}, "
        f"{report['photos']} photos ({report['photo']})",
        f"CLIPCHAT_MAX_BATCH={report['configured_max_batch']}, CLIPCHAT_MAX_WAIT_MS={report['max_wait_ms']:g}",
        "",
        f"{'users':>5}  {'max batch':>9}  {'photos/s':>8}  {'p50 ms':>7}  {'p95 ms':>7}  {'mean batch':>10}",
    ]
    lines += [_row(row) for row in report["rows"]]
    busiest = report["batch_sizes"][0]["concurrency"]
    lines += ["", f"batch sizes tried at {busiest} users:"]
    lines += [_row(row) for row in report["batch_sizes"]]
    lines += ["", f"Suggested CLIPCHAT_MAX_BATCH={report['suggested_max_batch']}: {report['reason']}"]
    if report["answers"] is not None:
        lines += ["", *answer_lines(report["answers"])]
    return lines


def _row(row: dict) -> str:
    return (
        f"{row['concurrency']:>5}  {row['max_batch']:>9}  {row['photos_per_s']:>8.2f}  {row['p50_ms']:>7.0f}  "
        f"{row['p95_ms']:>7.0f}  {row['mean_batch']:>10.1f}"
    )


def sample_photos(count: int, seed: int = SEED) -> list[bytes]:
    """Photo-like JPEGs, each its own scene: a lit gradient with sensor grain, overlapping shapes in
    random colours, and in every third a fine texture (foliage, fabric) that JPEG cannot smooth away."""
    rng = np.random.default_rng(seed)
    width, height = PHOTO_SIZE
    across, down = np.linspace(0, 1, width)[None, :, None], np.linspace(0, 1, height)[:, None, None]
    photos = []
    for index in range(count):
        light = rng.uniform(30, 200, 3)  # dim rooms to bright beaches
        pixels = light + across * rng.uniform(-90, 90, 3) + down * rng.uniform(-90, 90, 3)
        pixels = pixels + rng.normal(0, rng.uniform(2, 10), (height, width, 1))  # grain, brighter in the dark
        image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
        draw = ImageDraw.Draw(image)
        for _ in range(int(rng.integers(3, 12))):
            x, y = int(rng.integers(-100, width)), int(rng.integers(-100, height))
            box = (x, y, x + int(rng.integers(40, width // 2)), y + int(rng.integers(40, height // 2)))
            colour = tuple(int(c) for c in rng.integers(0, 256, 3))
            (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=colour)
        if index % 3 == 2:
            period = int(rng.integers(3, 9))
            texture = (np.indices((height, width)).sum(axis=0) % period < period // 2)[..., None] * 40
            image = Image.fromarray(np.clip(np.asarray(image, dtype=np.int16) - texture, 0, 255).astype(np.uint8))
        out = io.BytesIO()
        image.save(out, format="JPEG", quality=QUALITY)
        photos.append(out.getvalue())
    return photos


class _Lent(Executor):
    """The model thread lent to one measurement's LocalModels: closing that leaves it for the next one."""

    def __init__(self, thread: ThreadPoolExecutor) -> None:
        self.thread = thread

    def submit(self, fn, /, *args, **kwargs):
        return self.thread.submit(fn, *args, **kwargs)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        pass  # the real thread is shut once every measurement is done
