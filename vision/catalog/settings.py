"""Vision settings, read once from the environment or `.env` (prefix CLIPCHAT_)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from ..intake.images import ImageLimits
from .devices import SpeedPathsMode
from .model_sets import ModelSet, load_model_set


class VisionSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CLIPCHAT_", env_file=".env", extra="ignore")

    models: str = Field(
        "default",
        description="A built-in model set (`clipchat models` lists them), or a directory that holds clipchat.json.",
    )
    clip_model: str | None = Field(
        None,
        description="Override the set's CLIP: an open_clip name, hf-hub:ORG/REPO or local-dir:PATH. Another "
        "open_clip name keeps the set's pretrained tag when open_clip has those weights for it, else the error "
        "names the tags it has. Photos already kept for /search need `clipchat db reindex` after a change.",
    )
    clip_pretrained: str | None = Field(
        None, description="The open_clip pretrained tag for a built-in CLIP name, e.g. openai."
    )
    language_model: str | None = Field(
        None, description="Override the set's GPT-2 (the captioner's decoder): hf-hub:ORG/REPO or local-dir:PATH."
    )
    captioner: str | None = Field(
        None,
        description="Override the set's captioner: guided, local-dir:PATH, "
        "hf-hub:ORG/REPO, or clipcap:FILE for a ClipCap .pt file.",
    )
    answer_model: str | None = Field(
        None,
        description="Override the set's model for open questions (the default set's is stock GPT-2): any "
        "causal language model, or an image-text-to-text model that sees the photo (SmolVLM, Qwen2.5-VL, "
        "Florence-2), hf-hub:ORG/REPO or local-dir:PATH. A small instruction-tuned model with a chat "
        "template answers far better than GPT-2.",
    )
    allow_random_weights: bool = Field(
        False,
        description="Let a built-in CLIP name without a pretrained tag run "
        "on random weights (benchmarks only): otherwise refused.",
    )
    device: str = Field(
        "auto", description="Where the models run: auto (CUDA when present, else CPU), cpu, cuda or cuda:N."
    )
    dtype: str = Field(
        "auto",
        description="auto, float32, float16 or bfloat16. auto: float16 on CUDA; bfloat16 on CPUs that multiply "
        "it natively (Intel AMX, AMD Zen 4's AVX-512 BF16): faster, with captions, tags and search within a point "
        "of float32's (docs/benchmarks.md); else float32.",
    )
    cuda_graphs: bool = Field(
        False,
        description="On a GPU: greedy captions and CLIP's image tower at fixed batch "
        "sizes, replayed as CUDA graphs (the same captions, less time per "
        "photo at small batches; a few seconds' capture per batch size). "
        "Needs a greedy captioner; left off, with a warning, on a CPU.",
    )
    jpeg_on_device: bool = Field(
        False,
        description="On a GPU: decode and resize JPEG photos there, a batch at a "
        "time (other formats, rotated, CMYK and damaged files still go through Pillow). Left off, with a "
        "warning, on a CPU, where Pillow's reduced decoding is faster.",
    )
    speed_paths: SpeedPathsMode = Field(
        SpeedPathsMode.AUTO,
        description="On a CPU: auto plugs in each speed path (packed oneDNN linears for CLIP and for GPT-2, the "
        "few-row bfloat16 kernel, the lean GPT-2 step) that measured at least as fast as the plain path on this "
        "machine, timed for a few seconds at the first start and kept in the cache dir; all plugs in every one "
        "the CPU can run, none runs the plain path. `clipchat doctor` says which are on and why.",
    )
    cache_dir: Path | None = Field(
        None,
        description="clipchat's own cache (tag embeddings, the compiled CPU kernel); default: the user cache dir.",
    )
    hub_cache_dir: Path | None = Field(None, description="Where Hugging Face downloads go; default: HF_HOME's cache.")
    max_image_bytes: int = Field(
        ImageLimits.max_bytes, ge=1024, le=2**31, description="Larger photo files (in bytes) are refused politely."
    )
    max_image_pixels: int = Field(
        ImageLimits.max_pixels,
        ge=50_000,
        le=500_000_000,
        description="Images with more pixels are refused before decoding.",
    )

    def model_set(self) -> ModelSet:
        return load_model_set(self.models).with_overrides(
            clip=self.clip_model,
            clip_pretrained=self.clip_pretrained,
            language_model=self.language_model,
            captioner=self.captioner,
            answer_model=self.answer_model,
        )

    def image_limits(self) -> ImageLimits:
        return ImageLimits(max_bytes=self.max_image_bytes, max_pixels=self.max_image_pixels)
