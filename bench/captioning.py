"""Captioning throughput and latency: clipchat against the pipelines users would otherwise run.

    python -m bench [--json PATH] [--photos 32]

Real-size architectures with random weights (ViT-B/32 and GPT-2 124M cost the same
whatever their weights), every caption exactly 20 tokens, all pipelines measured in
this one run on this machine:

- clipchat: describe (CLIP pass, KV-cached batched generation, tags) behind the micro-batcher;
- ClipCap reference: batch 1, no KV cache, the whole sequence recomputed each step (its predict.py);
- open_clip CoCa (coca_ViT-B-32) `generate`, greedy, batched;
- transformers VisionEncoderDecoder ViT + GPT-2 `image-to-text` pipeline, batched.

Concurrency c means c clients sending photos at once, each waiting for its answer
before sending the next. FLOP efficiency is clipchat's achieved FLOP/s over this
machine's fp32 matmul rate measured here.
"""

from __future__ import annotations

import asyncio
import json
import logging
import resource
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
from PIL import Image

from bot.engine.batcher import MicroBatcher

TOKENS = 20
GPT2_VOCAB = 50257


@dataclass
class Figures:
    photos_per_s: float
    p50_ms: float
    p95_ms: float


def numbered_tokenizer():
    """A GPT-2-sized tokenizer made here (the real one lives on the hub): ids only, no language."""
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Whitespace
    from transformers import PreTrainedTokenizerFast

    vocab = {f"w{i}": i for i in range(GPT2_VOCAB)}
    tokenizer = Tokenizer(WordLevel(vocab, unk_token=f"w{GPT2_VOCAB - 2}"))
    tokenizer.pre_tokenizer = Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token=f"w{GPT2_VOCAB - 1}",
                                   unk_token=f"w{GPT2_VOCAB - 2}", pad_token=f"w{GPT2_VOCAB - 1}")


def photos(count: int) -> list[Image.Image]:
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)) for _ in range(count)]


def build_clipchat(device: str = "cpu", dtype: torch.dtype = torch.float32, clip_dtype: torch.dtype | None = None):
    import open_clip
    from transformers import GPT2Config, GPT2LMHeadModel

    from vision.captioner import PrefixCaptioner
    from vision.encoder import ClipEncoder
    from vision.language_model import linearize
    from vision.mapper import MapperConfig
    from vision.model_sets import ModelSet
    from vision.pipeline import VisionModels
    from vision.tagger import ZeroShotTagger, load_vocabulary

    where = torch.device(device)
    clip, _, preprocess = open_clip.create_model_and_transforms("ViT-B-32-quickgelu", pretrained=None)
    clip_dtype = clip_dtype or dtype
    clip = clip.to(where, clip_dtype)
    encoder = ClipEncoder(clip, preprocess, open_clip.get_tokenizer("ViT-B-32-quickgelu"), "bench", where, clip_dtype)
    lm = GPT2LMHeadModel(GPT2Config()).to(where, dtype).eval()
    captioner = PrefixCaptioner(MapperConfig(), lm, numbered_tokenizer()).to(where).eval()
    captioner.stop_ids = [GPT2_VOCAB - 1]  # random weights: nothing should end a caption early
    if where.type == "cpu" and dtype == torch.bfloat16:
        linearize(lm)  # as load_models does
    tagger = ZeroShotTagger(encoder, load_vocabulary("everyday"))
    model_set = ModelSet.from_dict("bench", {"clip": "ViT-B-32-quickgelu", "language_model": "gpt2",
                                             "captioner": "local-dir:/random-weights"})
    return VisionModels(model_set, encoder, captioner, tagger)


def clipchat_pipeline(models) -> Callable[[Sequence], list]:
    """Takes photos, or what `models.encoder.prepare` made of them (as the bot hands its model thread)."""
    from vision.decoding import DecodingOptions

    options = DecodingOptions(max_tokens=TOKENS)

    def run(items):
        if isinstance(items[0], Image.Image):
            return models.describe(list(items), options)
        return models.describe_pixels(models.encoder.pixels_from(items), options)
    return run


def clipcap_reference(models) -> Callable[[Sequence[Image.Image]], list]:
    from bench.reference import reference_greedy

    def run(images):
        return [reference_greedy(models.captioner, models.encoder.embed_images([image], normalize=False)[0],
                                 max_tokens=TOKENS) for image in images]
    return run


def coca_pipeline(device: str = "cpu", dtype: torch.dtype = torch.float32) -> Callable[[Sequence[Image.Image]], list]:
    """CoCa's greedy `generate` loop: image encoded once, the text decoder re-run over the whole
    sequence each step (it keeps no KV cache). open_clip's `generate` imports transformers helpers
    that transformers 5 removed, so the same loop runs here on CoCa's own forward."""
    import open_clip

    model, _, preprocess = open_clip.create_model_and_transforms("coca_ViT-B-32", pretrained=None)
    model = model.to(device, dtype).eval()
    start_of_text = 49406

    @torch.inference_mode()
    def run(images):
        pixels = torch.stack([preprocess(image) for image in images]).to(device, dtype)
        image_latent, image_embs = model._encode_image(pixels)
        out = torch.full((len(images), 1), start_of_text, dtype=torch.long, device=device)
        for _ in range(TOKENS):
            logits = model(pixels, out, image_latent=image_latent, image_embs=image_embs,
                           output_labels=False)["logits"][:, -1]
            out = torch.cat([out, logits.argmax(dim=-1, keepdim=True)], dim=1)
        return list(out[:, 1:])
    return run


def vision_encoder_decoder_pipeline(device: str = "cpu", dtype: torch.dtype = torch.float32
                                    ) -> Callable[[Sequence[Image.Image]], list]:
    """ViT-B/16 + GPT-2 with cross-attention, as nlpconnect/vit-gpt2-image-captioning.

    transformers 5 removed the `image-to-text` pipeline; these are the steps it ran:
    image processor, `generate` (KV-cached, batched), batch decode.
    """
    from transformers import (
        GPT2Config,
        GPT2LMHeadModel,
        VisionEncoderDecoderModel,
        ViTConfig,
        ViTImageProcessor,
        ViTModel,
    )

    tokenizer = numbered_tokenizer()
    processor = ViTImageProcessor()
    decoder = GPT2LMHeadModel(GPT2Config(add_cross_attention=True, is_decoder=True))
    model = VisionEncoderDecoderModel(encoder=ViTModel(ViTConfig()), decoder=decoder).to(device, dtype).eval()
    model.config.decoder_start_token_id = tokenizer.eos_token_id
    model.config.pad_token_id = tokenizer.pad_token_id

    @torch.inference_mode()
    def run(images):
        pixels = processor(images=list(images), return_tensors="pt").pixel_values.to(device, dtype)
        out = model.generate(pixels, max_new_tokens=TOKENS, min_new_tokens=TOKENS, do_sample=False, num_beams=1)
        return tokenizer.batch_decode(out, skip_special_tokens=True)
    return run


def measure(process, images: list[Image.Image], concurrency: int, max_batch: int, executor=None,
            prepare=None, max_wait: float = 0.03) -> Figures:
    """`concurrency` clients share `images`, each sending its next photo when the last is answered.

    `prepare` is work the pipeline does per photo before it joins a batch, beside the model
    thread (the bot's Pillow decode and resize); it counts in the latency.
    """
    async def main() -> Figures:
        preparing = 0
        batcher = MicroBatcher(process, max_batch=max_batch, max_wait=max_wait, max_queue=1024, executor=executor,
                               incoming=(lambda: preparing) if prepare else None)
        latencies: list[float] = []

        async def client(mine: list[Image.Image]) -> None:
            nonlocal preparing
            for image in mine:
                started = time.perf_counter()
                item = image
                if prepare:
                    preparing += 1
                    try:
                        item = await asyncio.to_thread(prepare, image)
                    finally:
                        preparing -= 1
                await batcher.submit(item)
                latencies.append(time.perf_counter() - started)

        await batcher.submit(prepare(images[0]) if prepare else images[0])  # warm up, as a running bot is
        shares = [images[i::concurrency] for i in range(concurrency)]
        started = time.perf_counter()
        await asyncio.gather(*(client(share) for share in shares))
        wall = time.perf_counter() - started
        await batcher.close()
        return Figures(len(images) / wall, 1000 * statistics.median(latencies),
                       1000 * float(np.percentile(latencies, 95)))
    return asyncio.run(main())


def matmul_rate(size: int = 2048, repeats: int = 10, dtype: torch.dtype = torch.float32) -> float:
    """This machine's matmul FLOP/s (fp32 by default): the physical limit the efficiency figure is measured against."""
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    for _ in range(2):
        a @ b
    started = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * size ** 3 * repeats / (time.perf_counter() - started)


def flops_per_photo(process, image: Image.Image) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        process([image])
    return float(counter.get_total_flops())


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def current_rss_mb() -> float:
    """Resident memory now (Linux); where /proc is missing, the peak so far."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * resource.getpagesize() / 2**20
    except OSError:
        return peak_rss_mb()


def run(photo_count: int = 32, log=print, dtype_name: str = "auto") -> dict:
    logging.getLogger("transformers").setLevel(logging.ERROR)
    torch.manual_seed(0)
    images = photos(photo_count)
    from bot.engine.batcher import model_thread
    from vision.devices import resolve_dtype

    # Every pipeline is built and run on one model thread, as the bot does: each thread that runs
    # PyTorch gets its own OpenMP team, and a second team measured 40-50% slower on 2 cores.
    thread = model_thread("bench")

    def on_thread(function, *args):
        return thread.submit(function, *args).result()

    dtype = resolve_dtype(dtype_name, torch.device("cpu"))  # `auto`: what the bot runs on this CPU
    results: dict = {"machine": {"threads": torch.get_num_threads(), "matmul_flops": on_thread(matmul_rate)},
                     "clipchat_dtype": str(dtype).removeprefix("torch.")}
    if dtype != torch.float32:
        results["machine"]["matmul_flops_" + results["clipchat_dtype"]] = on_thread(matmul_rate, 2048, 10, dtype)
    clip_dtype = torch.float32 if dtype_name == "auto" else dtype  # as load_models does on a CPU
    models = on_thread(build_clipchat, "cpu", dtype, clip_dtype)
    results["clip_dtype"] = str(clip_dtype).removeprefix("torch.")
    ours = clipchat_pipeline(models)
    on_thread(ours, images[:16])  # warm-up: allocator, thread pool, a full batch's activations
    results["clipchat_rss_mb"] = current_rss_mb()
    results["clipchat_load_peak_rss_mb"] = peak_rss_mb()
    results["flops_per_photo"] = on_thread(flops_per_photo, ours, images[0])
    # The baselines run as shipped, in float32; ClipCap's loop runs on float32 copies of our models.
    float32_models = models if dtype == torch.float32 else on_thread(build_clipchat)
    pipelines = {"clipchat": (ours, 16, models.encoder.prepare)}
    if dtype != torch.float32:  # what batching alone gives, without the faster number format
        pipelines["clipchat_float32"] = (clipchat_pipeline(float32_models), 16, float32_models.encoder.prepare)
    pipelines |= {
        "clipcap_ref": (clipcap_reference(float32_models), 1, None),
        "coca": (on_thread(coca_pipeline), 16, None),
        "vision_encoder_decoder": (on_thread(vision_encoder_decoder_pipeline), 16, None),
    }
    for name, (process, max_batch, prepare) in pipelines.items():
        on_thread(process, images[:1])
        for concurrency, share in ((1, images[:4]), (16, images if name.startswith("clipchat") else images[:16])):
            figures = measure(process, share, concurrency, max_batch, thread, prepare)
            results[f"{name}_c{concurrency}"] = asdict(figures)
            log(f"{name:>24} c{concurrency:<3} {figures.photos_per_s:7.2f} photos/s   "
                f"p50 {figures.p50_ms:8.0f} ms   p95 {figures.p95_ms:8.0f} ms")
    thread.shutdown()
    results["peak_rss_mb"] = peak_rss_mb()
    ours16, ref16 = results["clipchat_c16"], results["clipcap_ref_c16"]
    results["ratio_vs_clipcap_ref_c16"] = ours16["photos_per_s"] / ref16["photos_per_s"]
    results["ratio_vs_vision_encoder_decoder_c16"] = (ours16["photos_per_s"]
                                                      / results["vision_encoder_decoder_c16"]["photos_per_s"])
    results["ratio_vs_coca_c16"] = ours16["photos_per_s"] / results["coca_c16"]["photos_per_s"]
    results["latency_ratio_vs_clipcap_ref_c1"] = results["clipchat_c1"]["p50_ms"] / results["clipcap_ref_c1"]["p50_ms"]
    results["flop_efficiency_c16"] = (results["flops_per_photo"] * ours16["photos_per_s"]
                                      / results["machine"]["matmul_flops"])
    native = results["machine"].get("matmul_flops_" + results["clipchat_dtype"])
    if native:
        results[f"flop_efficiency_c16_vs_{results['clipchat_dtype']}_matmul"] = (
            results["flops_per_photo"] * ours16["photos_per_s"] / native)
    return results


def report(results: dict, log=print) -> None:
    log(f"\nmachine fp32 matmul: {results['machine']['matmul_flops'] / 1e9:.1f} GFLOP/s "
        f"({results['machine']['threads']} threads); clipchat {results['flops_per_photo'] / 1e9:.1f} GFLOP per photo, "
        f"GPT-2 in {results['clipchat_dtype']}, CLIP in {results['clip_dtype']} (baselines run as shipped, in float32)")
    log(f"throughput at c16 vs ClipCap reference:        {results['ratio_vs_clipcap_ref_c16']:.1f}x")
    log(f"throughput at c16 vs VisionEncoderDecoder:     {results['ratio_vs_vision_encoder_decoder_c16']:.1f}x")
    log(f"throughput at c16 vs CoCa:                     {results['ratio_vs_coca_c16']:.1f}x")
    log(f"p50 latency at c1 vs ClipCap reference:        {results['latency_ratio_vs_clipcap_ref_c1']:.2f}x")
    log(f"achieved FLOP/s at c16 / fp32 matmul rate:     {results['flop_efficiency_c16']:.1%}")
    native = f"flop_efficiency_c16_vs_{results['clipchat_dtype']}_matmul"
    if native in results:
        rate = results["machine"]["matmul_flops_" + results["clipchat_dtype"]]
        log(f"   ... / {results['clipchat_dtype']} matmul rate ({rate / 1e9:.0f} GFLOP/s):  {results[native]:.1%}")
    if "clipchat_float32_c16" in results:
        log(f"clipchat in float32 at c16 vs VisionEncoderDecoder: "
            f"{results['clipchat_float32_c16']['photos_per_s'] / results['vision_encoder_decoder_c16']['photos_per_s']:.1f}x")
    log(f"RSS with ViT-B/32 and GPT-2 loaded, after a batch of 16: {results['clipchat_rss_mb']:.0f} MB "
        f"(peak while loading {results['clipchat_load_peak_rss_mb']:.0f} MB; whole run with baselines "
        f"{results['peak_rss_mb']:.0f} MB)")


def dump(results: dict, path) -> None:
    path.write_text(json.dumps(results, indent=2))
