"""The load API: `load_models(name)` once, then `describe(images)`.

models = load_models("default", device="auto")
[description] = models.describe([image])
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image

from clipchat.errors import InvalidConfig
from clipchat.facts import PhotoFacts
from clipchat.metrics import STAGE_SECONDS

from .catalog.devices import SpeedPathsMode, resolve_device, resolve_dtype
from .catalog.hub import ensure_available
from .catalog.model_sets import ModelSet, load_model_set
from .decoding.guided import GuidedCaptioner
from .decoding.strategies import Caption, DecodingOptions, decode
from .fast import calibration, choose_step
from .fast.calibration import SpeedPaths, Timer
from .fast.graphs import static_image_features
from .models.answer_model import LazyAnswerModel, answer_model_from, load_answer_model
from .models.captioner import PrefixCaptioner, load_clipcap_checkpoint, load_prefix_captioner
from .models.encoder import ClipEncoder, load_clip
from .models.language_model import linearize, load_language_model
from .models.scoring import rerank
from .models.tagger import DEFAULT_TEMPLATES, ZeroShotTagger, load_vocabulary
from .models.vlm import AnswerKind, answer_kind
from .models.writing import WritingCheck

log = logging.getLogger(__name__)
SPEED_PATHS_ENV = "CLIPCHAT_SPEED_PATHS"  # VisionSettings.speed_paths; read here too for bench and library use


class VisionModels:
    """Everything one model set needs, loaded once and shared by every chat."""

    def __init__(
        self,
        model_set: ModelSet,
        encoder: ClipEncoder,
        captioner: PrefixCaptioner | GuidedCaptioner,
        tagger: ZeroShotTagger,
        answerer: LazyAnswerModel | None = None,
        speed_paths: SpeedPaths | None = None,
    ) -> None:
        self.model_set = model_set
        self.speed_paths = speed_paths  # which CPU speed paths are on, and why (None on a GPU)
        self.encoder = encoder
        self.captioner = captioner
        self.tagger = tagger
        self.writing = WritingCheck(encoder)  # whether a photo shows text, for a CLIP that tells it apart
        # Open questions: the set's answer model, else the captioner's own language model.
        self.answerer = answerer or LazyAnswerModel.ready(
            answer_model_from(captioner.lm, captioner.tokenizer, str(model_set.language_model))
        )

    def caption(self, raw: torch.Tensor, options: DecodingOptions | None = None) -> list[list[Caption]]:
        """(B, D) raw CLIP image vectors -> candidate captions per image, best first, as the options ask
        (without options: the captioner's own method)."""
        return decode(self.captioner, raw, options)

    def describe(
        self,
        images: Sequence[Image.Image],
        options: DecodingOptions | None = None,
        top_k_tags: int = 5,
        tag_threshold: float = 0.1,
    ) -> list[PhotoFacts]:
        """Caption and tag a batch of images in one CLIP pass and one batched generation."""
        if not images:
            return []
        return self.describe_pixels(self.encoder.preprocess_images(images), options, top_k_tags, tag_threshold)

    def describe_pixels(
        self,
        pixels: torch.Tensor,
        options: DecodingOptions | None = None,
        top_k_tags: int = 5,
        tag_threshold: float = 0.1,
    ) -> list[PhotoFacts]:
        """The same from (N, 3, H, W) preprocessed pixels, so the Pillow work can run elsewhere, in parallel."""
        if not len(pixels):
            return []
        with STAGE_SECONDS.labels("clip").time():
            if options is not None and options.graphs:  # CLIP's tower at fixed batch sizes too
                raw = static_image_features(self.encoder, pixels)
            else:
                raw = self.encoder.embed_pixels(pixels, normalize=False)
            _finish(raw)  # on a GPU the pass runs ahead of Python: without this its time would count as captioning
        vectors = F.normalize(raw, dim=-1)
        with STAGE_SECONDS.labels("caption").time():
            captions = self.caption(raw, options)
        tags = self.tagger.tag(vectors, top_k=top_k_tags, threshold=tag_threshold)
        for image_tags, writing in zip(tags, self.writing.tags(vectors)):
            if writing is not None:  # last: the note that it shows text, not a tag of what it shows
                image_tags.append(writing)
        out = []
        for vector, candidates, image_tags in zip(vectors, captions, tags):
            best = rerank(self.encoder, vector, candidates)[0][0] if len(candidates) > 1 else candidates[0]
            out.append(
                PhotoFacts(
                    caption=best.text,
                    tags=tuple(image_tags),
                    embedding=vector.float().cpu().numpy(),
                    model=self.encoder.identity,
                )
            )
        return out


def use_speed_paths(
    encoder: ClipEncoder,
    captioner: PrefixCaptioner | GuidedCaptioner,
    cache_dir: Path | None = None,
    mode: SpeedPathsMode | str | None = None,
    timer: Timer | None = None,
) -> SpeedPaths | None:
    """Plug `vision.fast` into the plain models, once the weights are in; the same arithmetic up to float
    rounding, inference only. Returns which CPU paths are on and why (None on a GPU).

    Greedy decoding's steps: `choose_step` picks them (CUDA graphs with `graphs=True`). On a CPU, GPT-2's
    Conv1D as nn.Linear (see linearize), then the paths `mode` (default: CLIPCHAT_SPEED_PATHS, else auto)
    allows: under auto each that measured at least as fast as the plain path on this machine, timed at the
    first start and cached in `cache_dir` (clipchat's cache by default; see vision.fast.calibration): the lean
    GPT-2 step, oneDNN's packed linears for GPT-2 and for CLIP, and bf16_rows' few-row kernel for a bfloat16
    GPT-2 (built into `cache_dir` the first time).
    """
    if isinstance(captioner, PrefixCaptioner):  # the guided captioner decodes its own way
        captioner.choose_step = choose_step
    weight = next(captioner.lm.parameters())
    if weight.device.type != "cpu":  # the CPU paths below would not apply, and need not say so
        return None
    linearize(captioner.lm)
    return calibration.choose(
        encoder,
        captioner,
        Path(cache_dir or default_cache_dir()),
        speed_paths_mode(mode),
        timer or calibration.wall_timer,
    )


def speed_paths_mode(mode: SpeedPathsMode | str | None = None) -> SpeedPathsMode:
    """`mode`, else CLIPCHAT_SPEED_PATHS, else auto."""
    value = mode if mode is not None else os.environ.get(SPEED_PATHS_ENV) or SpeedPathsMode.AUTO
    try:
        return SpeedPathsMode(str(value).strip().lower())
    except ValueError:
        choices = ", ".join(m.value for m in SpeedPathsMode)
        raise InvalidConfig(f"Unknown speed paths {value!r}: use one of {choices}.") from None


def _finish(tensor: torch.Tensor) -> None:
    """Wait for the device's queued work on `tensor` (nothing to wait for on a CPU)."""
    if tensor.is_cuda:
        torch.cuda.synchronize(tensor.device)


def load_models(
    models: str | ModelSet = "default",
    device: str = "auto",
    dtype: str = "auto",
    cache_dir: Path | None = None,
    hub_cache_dir: Path | None = None,
    *,
    allow_random_weights: bool = False,
    speed_paths: SpeedPathsMode | str | None = None,
) -> VisionModels:
    """Load a model set by name, directory or object; unknown names are answered with the valid ones.

    `cache_dir` holds clipchat's own derived files (tag embeddings); `hub_cache_dir`
    overrides where Hugging Face downloads go (by default HF_HOME's cache). `speed_paths`: which CPU speed
    paths to plug in (auto, all, none; default CLIPCHAT_SPEED_PATHS, else auto: see `use_speed_paths`).
    """
    mode = speed_paths_mode(speed_paths)  # a wrong value is refused before minutes of loading
    cache_dir = cache_dir or default_cache_dir()
    model_set = models if isinstance(models, ModelSet) else load_model_set(models)
    ensure_available(model_set, hub_cache_dir)  # seconds, not minutes of retries, when weights cannot come
    torch_device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, torch_device)
    encoder = load_clip(
        model_set.clip,
        model_set.clip_pretrained,
        torch_device,
        torch_dtype,
        hub_cache_dir,
        allow_random_weights=allow_random_weights,
    )
    choice = model_set.captioner
    captioner: PrefixCaptioner | GuidedCaptioner
    if choice.kind == "guided":
        lm, tokenizer = load_language_model(model_set.language_model, torch_device, torch_dtype, hub_cache_dir)
        captioner = GuidedCaptioner(lm, tokenizer, encoder, prompt=model_set.guided_prompt)
    elif choice.kind == "clipcap":
        captioner = load_clipcap_checkpoint(
            choice.checkpoint, model_set.language_model, torch_device, torch_dtype, hub_cache_dir, clip=encoder
        )
    else:
        captioner = load_prefix_captioner(
            choice.checkpoint, model_set.language_model, torch_device, torch_dtype, hub_cache_dir, clip=encoder
        )
    paths = use_speed_paths(encoder, captioner, cache_dir, mode)
    tagger = ZeroShotTagger(
        encoder,
        load_vocabulary(model_set.vocabulary),
        model_set.tag_templates or DEFAULT_TEMPLATES,
        cache_dir=cache_dir,
    )
    answerer = None  # the captioner's language model
    answer_ref = model_set.answer_model
    if answer_ref is not None and not (choice.kind == "guided" and answer_ref == model_set.language_model):
        # A model of its own, loaded on the first open question: photos alone never pay for its memory. Its kind
        # (whether it sees the photo) is read from its config now: a model that cannot answer is refused here.
        kind = answer_kind(answer_ref, hub_cache_dir)
        words = None
        if kind is AnswerKind.TASKS:  # it cannot chat: the open questions it has no task for go to the captioner's
            words = LazyAnswerModel.ready(answer_model_from(captioner.lm, captioner.tokenizer, str(choice)))
        answerer = LazyAnswerModel(
            partial(load_answer_model, answer_ref, torch_device, torch_dtype, hub_cache_dir, kind),
            str(answer_ref),
            kind,
            words,
        )
    log.info(
        "loaded model set %s (CLIP %s, captioner %s, answers %s) on %s/%s",
        model_set.name,
        encoder.identity,
        choice,
        answer_ref or "by the captioner's language model",
        torch_device,
        torch_dtype,
    )
    return VisionModels(model_set, encoder, captioner, tagger, answerer, paths)


def default_cache_dir() -> Path:
    import platformdirs

    return Path(platformdirs.user_cache_dir("clipchat"))
