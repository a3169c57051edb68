"""The captioning pipelines the benchmark compares, each from JPEG bytes to a 20-token caption.

Every pipeline is a `Pipeline`: `prepare` runs per photo on worker threads (it may use
Pillow and NumPy, never a parallel torch op), `process` runs a batch on the one model
thread. Architectures are real-size with random weights, seeded, so a pipeline built
twice in two dtypes has the same weights. Each baseline comes twice:

- as shipped: what its own example code does (ClipCap's predict.py one photo at a time
  without a KV cache; CoCa's `generate`, which re-runs both text towers every step;
  VisionEncoderDecoder's processor run over the batch on the model thread);
- at its best: batched with a KV cache, decoding and preprocessing beside the model thread with
  clipchat's own `load_image` (which shrinks large photos while decoding them).

`on_device_decoding` turns clipchat or a best-configured baseline into the same pipeline with its
JPEGs decoded and resized on the device (`vision.intake.device_jpeg`), as `python -m bench.gpu` runs them
on a GPU. `Pipeline.decoder` names how a pipeline decodes, for the decoding figures
(`bench/photo_decoding.py`).
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw

from vision.intake.images import load_image

TOKENS = 20
GPT2_VOCAB = 50257
SEED = 0


@dataclass(frozen=True)
class Pipeline:
    name: str  # the key in bench.json
    system: str  # what a user would call it
    config: str  # "as shipped" or what its best configuration adds
    max_batch: int
    prepare: Callable[[bytes], Any]  # any thread: decode (and resize) one photo
    process: Callable[[Sequence[Any]], list]  # the model thread: one result per prepared photo
    dtype: str = "float32"
    parts: dict = field(default_factory=dict)  # models the FLOP count and the token check reach into
    decoder: str = "pillow_draft"  # pillow_full (every pixel), pillow_draft (load_image) or device (gpu_intake)


def jpeg_photos(count: int, seed: int = SEED, size: tuple[int, int] = (1280, 960)) -> list[bytes]:
    """Photo-like JPEGs at Telegram's largest photo size and about its quality (85): smooth gradients,
    sensor-like noise and shapes, made here from `seed` so every run decodes the same bytes."""
    rng = np.random.default_rng(seed)
    photos = []
    for _ in range(count):
        width, height = size
        ramp = np.linspace(0, 1, width)[None, :, None] * rng.uniform(-120, 120, 3)
        fall = np.linspace(0, 1, height)[:, None, None] * rng.uniform(-120, 120, 3)
        pixels = np.clip(rng.uniform(60, 200, 3) + ramp + fall + rng.normal(0, 6, (height, width, 3)), 0, 255)
        image = Image.fromarray(pixels.astype(np.uint8))
        draw = ImageDraw.Draw(image)
        for _ in range(int(rng.integers(3, 9))):
            x, y = rng.integers(0, width), rng.integers(0, height)
            w, h = rng.integers(60, width // 2), rng.integers(60, height // 2)
            shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
            shape((x, y, x + w, y + h), fill=tuple(int(c) for c in rng.integers(0, 255, 3)))
        out = io.BytesIO()
        image.save(out, format="JPEG", quality=85)
        photos.append(out.getvalue())
    return photos


def decode(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data)).convert("RGB")


def numbered_tokenizer():
    """A GPT-2-sized tokenizer made here (the real one lives on the hub): ids only, no language."""
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Whitespace
    from transformers import PreTrainedTokenizerFast

    vocab = {f"w{i}": i for i in range(GPT2_VOCAB)}
    tokenizer = Tokenizer(WordLevel(vocab, unk_token=f"w{GPT2_VOCAB - 2}"))
    tokenizer.pre_tokenizer = Whitespace()
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        eos_token=f"w{GPT2_VOCAB - 1}",
        unk_token=f"w{GPT2_VOCAB - 2}",
        pad_token=f"w{GPT2_VOCAB - 1}",
    )


def build_models(
    device: str = "cpu",
    dtype: torch.dtype = torch.float32,
    clip_dtype: torch.dtype | None = None,
    as_clipchat_loads: bool = True,
    tags: bool = True,
    speed_paths: str | None = None,
):
    """ViT-B/32 CLIP, GPT-2 124M and a prefix mapper, seeded: the same weights in any dtype.

    `as_clipchat_loads` applies `load_models`' speed paths (vision.pipeline.use_speed_paths: GPT-2's Conv1D
    as nn.Linear, then those `speed_paths` allows: auto, all or none, by default CLIPCHAT_SPEED_PATHS else auto,
    which times each on this machine once and caches the choice); ClipCap's own code would not, so its
    rows build without them. Without `tags` there is no tagger
    (its label vectors take CLIP's text tower over the whole vocabulary), for pipelines that never tag.
    """
    import open_clip
    from transformers import GPT2Config, GPT2LMHeadModel

    from vision.catalog.model_sets import ModelSet
    from vision.models.captioner import PrefixCaptioner
    from vision.models.encoder import ClipEncoder
    from vision.models.mapper import MapperConfig
    from vision.models.tagger import ZeroShotTagger, load_vocabulary
    from vision.pipeline import VisionModels, use_speed_paths

    where, clip_dtype = torch.device(device), clip_dtype or dtype
    torch.manual_seed(SEED)
    clip, _, preprocess = open_clip.create_model_and_transforms("ViT-B-32-quickgelu", pretrained=None)
    clip = clip.to(where, clip_dtype).requires_grad_(False)  # inference only; FLOP counting needs it
    encoder = ClipEncoder(clip, preprocess, open_clip.get_tokenizer("ViT-B-32-quickgelu"), "bench", where, clip_dtype)
    lm = GPT2LMHeadModel(GPT2Config())
    captioner = PrefixCaptioner(MapperConfig(), lm, numbered_tokenizer()).to(where, dtype).eval().requires_grad_(False)
    captioner.stop_ids = [GPT2_VOCAB - 1]
    paths = use_speed_paths(encoder, captioner, mode=speed_paths) if as_clipchat_loads else None
    tagger = ZeroShotTagger(encoder, load_vocabulary("everyday")) if tags else None
    model_set = ModelSet.from_dict(
        "bench", {"clip": "ViT-B-32-quickgelu", "language_model": "gpt2", "captioner": "local-dir:/random-weights"}
    )
    return VisionModels(model_set, encoder, captioner, tagger, speed_paths=paths)


def _name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def clipchat(
    device: str = "cpu", dtype: torch.dtype = torch.float32, clip_dtype: torch.dtype | None = None, graphs: bool = False
) -> Pipeline:
    """The bot's own path: ModelFeatures.prepare (decode, checks, resize) and ModelFeatures.describe
    (CLIP, KV-cached batched greedy captions, tags), as LocalModels runs them. With `graphs`, CLIP's
    tower and each greedy step at fixed batch sizes, replayed as CUDA graphs on a GPU (vision/fast/graphs.py)."""
    from bot.engine.api import DescribeRequest
    from bot.engine.features import ModelFeatures
    from vision.decoding.strategies import DecodingOptions

    models = build_models(device, dtype, clip_dtype)
    decoding = DecodingOptions(max_tokens=TOKENS, graphs=graphs)
    features = ModelFeatures(models, decoding=decoding)
    mixed = clip_dtype not in (None, dtype)
    config = f"CLIP {_name(clip_dtype)}, GPT-2 {_name(dtype)}" if mixed else "as shipped"
    return Pipeline(
        "clipchat" + (f"_clip_{_name(clip_dtype)}" if mixed else "") + ("_graphs" if graphs else ""),
        "clipchat",
        config + (", CUDA graphs (static KV cache, fixed batch sizes)" if graphs else ""),
        16,
        lambda data: features.prepare(DescribeRequest(data)),
        features.describe,
        _name(dtype),
        {"models": models, "decoding": decoding},
    )


def clipchat_graphs(device: str = "cpu", dtype: torch.dtype = torch.float32) -> Pipeline:
    return clipchat(device, dtype, graphs=True)


def clipcap_reference(device: str = "cpu", dtype: torch.dtype = torch.float32, models=None) -> Pipeline:
    """ClipCap's predict.py: one photo at a time, the whole sequence through GPT-2 at every step. `models`: ClipCap's
    own (`build_models(as_clipchat_loads=False, tags=False)`), when already built; only read."""
    from bench.reference import reference_greedy

    models = models or build_models(device, dtype, as_clipchat_loads=False, tags=False)
    encoder = models.encoder

    def run(images):
        return [
            reference_greedy(
                models.captioner,
                encoder.embed_pixels(encoder.preprocess(image)[None], normalize=False)[0],
                max_tokens=TOKENS,
            )
            for image in images
        ]

    return Pipeline(
        "clipcap_ref",
        "ClipCap",
        "as shipped: batch 1, no KV cache",
        1,
        decode,
        run,
        _name(dtype),
        {"models": models},
        decoder="pillow_full",
    )


def clipcap_batched(device: str = "cpu", dtype: torch.dtype = torch.float32, models=None) -> Pipeline:
    """The same weights at their best: batched, KV-cached `generate` from the prefix embeddings (`models`: as
    clipcap_reference's)."""
    models = models or build_models(device, dtype, as_clipchat_loads=False, tags=False)
    encoder, captioner = models.encoder, models.captioner

    @torch.inference_mode()
    def run(prepared):
        raw = encoder.embed_pixels(encoder.pixels_from(prepared), normalize=False)  # (B, 512)
        prefix = captioner.prefix(raw)  # (B, prefix_length, 768)
        mask = torch.ones(prefix.shape[:2], dtype=torch.long, device=prefix.device)
        out = captioner.lm.generate(
            inputs_embeds=prefix,
            attention_mask=mask,
            max_new_tokens=TOKENS,
            min_new_tokens=TOKENS,
            do_sample=False,
            num_beams=1,
            pad_token_id=GPT2_VOCAB - 1,
            eos_token_id=GPT2_VOCAB - 1,
        )
        return [row.tolist() for row in out]

    return Pipeline(
        "clipcap_best",
        "ClipCap",
        "batched, KV cache, resize on workers",
        16,
        lambda data: encoder.prepare(load_image(data)),
        run,
        _name(dtype),
        {"models": models},
    )


def _coca(device: str, dtype: torch.dtype):
    import open_clip

    torch.manual_seed(SEED)
    model, _, preprocess = open_clip.create_model_and_transforms("coca_ViT-B-32", pretrained=None)
    # open_clip leaves the decoder's output projection empty (zeros here) until weights load;
    # initialised like its siblings, argmax picks real tokens instead of always token 0
    torch.nn.init.normal_(model.text_decoder.text_projection, std=model.text_decoder.width**-0.5)
    return model.to(device, dtype).eval().requires_grad_(False), preprocess


def coca(device: str = "cpu", dtype: torch.dtype = torch.float32, built=None) -> Pipeline:
    """CoCa's greedy `generate` loop: image encoded once, both text towers re-run over the whole
    sequence each step. open_clip's `generate` imports transformers helpers that transformers 5
    removed, so the same loop runs here on CoCa's own forward. `built`: `_coca`'s (model, preprocess), when
    already built; only read."""
    from bench.coca_cache import START_OF_TEXT

    model, preprocess = built or _coca(device, dtype)

    @torch.inference_mode()
    def run(images):
        pixels = torch.stack([preprocess(image) for image in images]).to(device, dtype)
        image_latent, image_embs = model._encode_image(pixels)
        out = torch.full((len(images), 1), START_OF_TEXT, dtype=torch.long, device=device)
        for _ in range(TOKENS):
            logits = model(pixels, out, image_latent=image_latent, image_embs=image_embs, output_labels=False)[
                "logits"
            ][:, -1]
            out = torch.cat([out, logits.argmax(dim=-1, keepdim=True)], dim=1)
        return [row.tolist() for row in out[:, 1:]]

    return Pipeline(
        "coca",
        "CoCa",
        "as shipped: no KV cache",
        16,
        decode,
        run,
        _name(dtype),
        {"model": model},
        decoder="pillow_full",
    )


def coca_cached(device: str = "cpu", dtype: torch.dtype = torch.float32, built=None) -> Pipeline:
    from bench.coca_cache import greedy_logits
    from vision.models.encoder import ClipEncoder

    model, preprocess = built or _coca(device, dtype)
    images = ClipEncoder(model, preprocess, None, "coca", torch.device(device), dtype)  # its prepare/pixels_from

    @torch.inference_mode()
    def run(prepared):
        _, image_embs = model._encode_image(images.pixels_from(prepared).to(dtype))
        tokens, _ = greedy_logits(model, image_embs, TOKENS)
        return [row.tolist() for row in tokens]

    return Pipeline(
        "coca_best",
        "CoCa",
        "KV cache, resize on workers",
        16,
        lambda data: images.prepare(load_image(data)),
        run,
        _name(dtype),
        {"model": model, "images": images},
    )


def _vision_encoder_decoder(device: str, dtype: torch.dtype):
    from transformers import GPT2Config, GPT2LMHeadModel, VisionEncoderDecoderModel, ViTConfig, ViTModel

    torch.manual_seed(SEED)
    decoder = GPT2LMHeadModel(GPT2Config(add_cross_attention=True, is_decoder=True))
    model = (
        VisionEncoderDecoderModel(encoder=ViTModel(ViTConfig()), decoder=decoder)
        .to(device, dtype)
        .eval()
        .requires_grad_(False)
    )
    model.config.decoder_start_token_id = GPT2_VOCAB - 1
    model.config.pad_token_id = GPT2_VOCAB - 1
    return model


def vision_encoder_decoder(device: str = "cpu", dtype: torch.dtype = torch.float32, best: bool = False) -> Pipeline:
    """ViT-B/16 + GPT-2 with cross-attention, as nlpconnect/vit-gpt2-image-captioning: `generate` is
    already batched and KV-cached. transformers 5 removed the `image-to-text` pipeline; these are the
    steps it ran. At its best the image processor runs per photo on the workers."""
    from transformers import ViTImageProcessor, ViTImageProcessorPil

    from vision.models.encoder import ClipEncoder

    model, processor = _vision_encoder_decoder(device, dtype), ViTImageProcessor()

    @torch.inference_mode()
    def generate(pixels: torch.Tensor) -> list:
        out = model.generate(
            pixels.to(device, dtype), max_new_tokens=TOKENS, min_new_tokens=TOKENS, do_sample=False, num_beams=1
        )
        return [row.tolist() for row in out[:, 1:]]

    if best:
        # the processor's steps as torchvision transforms, for decoding on the device (`on_device_decoding`)
        images = ClipEncoder(model, _vit_processor_steps(processor), None, "vit", torch.device(device), dtype)
        # On the workers, its Pillow twin: the default one runs torchvision, and a worker thread that runs a
        # parallel PyTorch op keeps an OpenMP team that slows the model thread of every pipeline after it.
        on_workers = ViTImageProcessorPil()
        return Pipeline(
            "vision_encoder_decoder_best",
            "VisionEncoderDecoder",
            "processor on workers",
            16,
            lambda data: on_workers(images=load_image(data), return_tensors="np").pixel_values[0],
            lambda prepared: generate(torch.from_numpy(np.stack(prepared))),
            _name(dtype),
            {"model": model, "images": images, "from_crops": lambda crops: generate(images.pixels_from(crops))},
        )
    return Pipeline(
        "vision_encoder_decoder",
        "VisionEncoderDecoder",
        "as shipped: batched, KV cache",
        16,
        decode,
        lambda images: generate(processor(images=list(images), return_tensors="pt").pixel_values),
        _name(dtype),
        {"model": model},
        decoder="pillow_full",
    )


def _vit_processor_steps(processor):
    """What ViTImageProcessor does (a bilinear resize to its fixed size, scale to 0-1, normalise), as a
    torchvision Compose, which `ClipEncoder` splits at ToTensor and `vision.intake.device_jpeg` runs on tensors."""
    from torchvision import transforms as T

    if not (
        processor.do_resize
        and processor.do_rescale
        and processor.do_normalize
        and processor.rescale_factor == 1 / 255
        and processor.resample == Image.Resampling.BILINEAR
    ):
        raise ValueError(f"an image processor this benchmark does not mirror: {processor}")
    return T.Compose(
        [
            T.Resize((processor.size["height"], processor.size["width"]), T.InterpolationMode.BILINEAR),
            T.ToTensor(),
            T.Normalize(processor.image_mean, processor.image_std),
        ]
    )


BASELINES = (
    clipcap_reference,
    clipcap_batched,
    coca,
    coca_cached,
    vision_encoder_decoder,
    lambda device="cpu", dtype=torch.float32: vision_encoder_decoder(device, dtype, best=True),
)


def on_device_decoding(pipeline: Pipeline, device: str | None = None) -> Pipeline:
    """`pipeline` with its JPEGs decoded, resized and cropped on `device` (its models' device by default)
    by `vision.intake.device_jpeg`: headers checked on the workers, the batch decoded on the model thread.

    For clipchat and the best-configured baselines, whose `prepare` makes an encoder's crops
    (`parts["images"]`, else the models' encoder); `parts["from_crops"]` runs a batch of crops where
    `process` takes something else.
    """
    from clipchat.errors import BadImage
    from vision.intake.device_jpeg import DeviceIntake

    images = pipeline.parts.get("images") or pipeline.parts["models"].encoder
    from_crops = pipeline.parts.get("from_crops", pipeline.process)
    intake = DeviceIntake(images, device=device)

    def process(prepared: Sequence[Any]) -> list:
        crops = intake.decode(prepared)
        failed = next((crop for crop in crops if isinstance(crop, BadImage)), None)
        if failed is not None:  # the benchmark's photos all decode: this would be a bug, not a photo
            raise failed
        return from_crops(crops)

    where = "the GPU" if intake.device.type == "cuda" else "the CPU by torchvision"
    kept = [part for part in pipeline.config.split(", ") if part != "as shipped" and not part.endswith("on workers")]
    return replace(
        pipeline,
        config=", ".join([*kept, f"JPEGs decoded and resized on {where}"]),
        prepare=intake.prepare,
        process=process,
        decoder="device",
    )
