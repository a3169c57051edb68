"""The prefix captioner (the ClipCap design): a mapping network feeding a GPT-2 through its input embeddings.

Two on-disk formats load here:
- our own: a directory with `captioner.json` and `mapper.safetensors`, plus
  `language_model/` when GPT-2 was fine-tuned;
- ClipCap's published `.pt` files (`clip_project.*` and `gpt.*` keys).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, cast

import torch
import torch.nn as nn
import torch.nn.functional as F

from clipchat.errors import InvalidConfig, ModelNotFound

from ..catalog.model_sets import Ref
from .language_model import load_language_model, stop_token_ids
from .mapper import MapperConfig, build_mapper

if TYPE_CHECKING:
    from transformers import PreTrainedModel

    from ..decoding.steps import StepChooser
    from .encoder import ClipEncoder

log = logging.getLogger(__name__)

FORMAT = "clipchat-prefix-captioner"
BUNDLED = "bundled"
# GPT-2 checkpoints from transformers < 4.31 carry the causal mask as buffers; current GPT-2 builds it on the fly.
LEGACY_BUFFERS = (".attn.bias", ".attn.masked_bias")
# What ClipCap's published checkpoints (COCO, Conceptual Captions) were trained on; their .pt files do not say.
CLIPCAP_TRAINED_WITH = (
    "ClipCap's published checkpoints were trained on OpenAI's ViT-B/32 (512-wide): set "
    "CLIPCHAT_CLIP_MODEL=ViT-B-32-quickgelu and CLIPCHAT_CLIP_PRETRAINED=openai"
)


class PrefixCaptioner(nn.Module):
    methods = ("greedy", "beam", "sample")  # decoding strategies that start from the mapped prefix

    def __init__(self, config: MapperConfig, lm: PreTrainedModel, tokenizer, source: str = "") -> None:
        super().__init__()
        self.config = config
        self.mapper = build_mapper(config)
        self.lm = lm
        self.tokenizer = tokenizer
        self.source = source
        self.stop_ids = stop_token_ids(tokenizer)
        # Greedy decoding's faster steps for this language model (a `vision.decoding.steps.StepChooser`, which
        # `vision.pipeline` gives it: `vision.fast.choose_step`); None: the plain `forward` step.
        self.choose_step: StepChooser | None = None

    def refusal(self, method: str) -> str:
        return (
            f"Decoding method {method!r} is for model sets without a captioning checkpoint; "
            f"this one decodes with {', '.join(self.methods)}."
        )

    @property
    def device(self) -> torch.device:
        return next(self.lm.parameters()).device

    def prefix(self, clip: torch.Tensor) -> torch.Tensor:
        """(B, clip_dim) raw CLIP vectors -> (B, prefix_length, lm_dim) in the language model's dtype."""
        mapper_dtype = next(self.mapper.parameters()).dtype
        clip = clip.to(self.device, mapper_dtype)
        if self.config.normalize_prefix:
            clip = F.normalize(clip, dim=-1)
        return self.mapper(clip).to(self.lm.dtype)

    def forward(self, clip: torch.Tensor, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Teacher forcing: (B, T) caption tokens -> (B, T, vocab) logits predicting each of them."""
        prefix = self.prefix(clip)
        embeds = torch.cat([prefix, self.lm.get_input_embeddings()(tokens)], dim=1)
        full_mask = torch.cat([torch.ones(prefix.shape[:2], dtype=mask.dtype, device=mask.device), mask], dim=1)
        logits = self.lm(inputs_embeds=embeds, attention_mask=full_mask).logits
        return logits[:, self.config.prefix_length - 1 : -1]

    def save(
        self, directory: Path, *, bundle_language_model: bool, language_model_ref: str = "", trained_with_clip: str = ""
    ) -> None:
        from safetensors.torch import save_file

        directory.mkdir(parents=True, exist_ok=True)
        manifest = {
            "format": FORMAT,
            "version": 1,
            "mapper": self.config.to_dict(),
            "language_model": BUNDLED if bundle_language_model else language_model_ref,
            "trained_with_clip": trained_with_clip,
        }
        save_file(
            {k: v.detach().float().contiguous().cpu() for k, v in self.mapper.state_dict().items()},
            str(directory / "mapper.safetensors"),
        )
        if bundle_language_model:
            self.lm.save_pretrained(directory / "language_model")
            self.tokenizer.save_pretrained(directory / "language_model")
        (directory / "captioner.json").write_text(json.dumps(manifest, indent=2))


def load_prefix_captioner(
    ref: Ref,
    default_lm: Ref,
    device: torch.device,
    dtype: torch.dtype,
    cache_dir: Path | None = None,
    *,
    clip: ClipEncoder | None = None,
) -> PrefixCaptioner:
    """Our own format, from `local-dir:PATH` or `hf-hub:ORG/REPO`; with `clip`, refused unless it fits that CLIP."""
    from safetensors.torch import load_file

    directory = _local_directory(ref, cache_dir)
    manifest_path = directory / "captioner.json"
    if not manifest_path.is_file():
        raise ModelNotFound(f"{directory} is not a captioner directory: it has no captioner.json.")
    manifest = json.loads(manifest_path.read_text())
    if manifest.get("format") != FORMAT:
        raise InvalidConfig(f"{manifest_path} is not a {FORMAT} file.")
    if clip is not None:
        trained_with = manifest.get("trained_with_clip")
        check_clip_width(
            str(ref),
            MapperConfig(**manifest["mapper"]).clip_dim,
            clip,
            f"It was trained with CLIP {trained_with}: set CLIPCHAT_CLIP_MODEL to that CLIP, or train "
            "one for this CLIP with `clipchat train-captioner`"
            if trained_with
            else "",
        )
    lm_value = manifest.get("language_model") or str(default_lm)
    lm_ref = Ref("local-dir", str(directory / "language_model")) if lm_value == BUNDLED else Ref.parse(lm_value)
    lm, tokenizer = load_language_model(lm_ref, device, dtype, cache_dir)
    captioner = PrefixCaptioner(MapperConfig(**manifest["mapper"]), lm, tokenizer, source=str(ref))
    captioner.mapper.load_state_dict(load_file(str(directory / "mapper.safetensors")))
    return captioner.to(device).eval()


def load_clipcap_checkpoint(
    ref: Ref,
    lm_ref: Ref,
    device: torch.device,
    dtype: torch.dtype,
    cache_dir: Path | None = None,
    *,
    clip: ClipEncoder | None = None,
) -> PrefixCaptioner:
    """ClipCap's `.pt` layout, from a file path or `hf-hub:ORG/REPO/FILE`; with `clip`, refused unless it fits."""
    path = _local_file(ref, cache_dir)
    try:  # mapped, not read: the fine-tuned GPT-2 inside is not held twice while it is copied into the model
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError:  # torch's legacy (pre-zip) format cannot be mapped
        state = torch.load(path, map_location="cpu", weights_only=True)
    mapper_state = {k.removeprefix("clip_project."): v for k, v in state.items() if k.startswith("clip_project.")}
    gpt_state = {
        k.removeprefix("gpt."): v for k, v in state.items() if k.startswith("gpt.") and not k.endswith(LEGACY_BUFFERS)
    }
    if not mapper_state:
        raise InvalidConfig(f"{path} has no clip_project.* weights: it is not a ClipCap checkpoint.")
    if clip is not None:  # before GPT-2 loads: the answer needs only the mapper's first layer
        first = mapper_state.get("model.0.weight", mapper_state.get("linear.weight"))
        if first is not None:
            check_clip_width(f"clipcap:{ref}", first.shape[1], clip, CLIPCAP_TRAINED_WITH)
    lm, tokenizer = load_language_model(lm_ref, device, dtype, cache_dir)
    # transformers types input embeddings as any Module; a causal LM's are an nn.Embedding, the prefix's width
    embeddings = cast(nn.Embedding, lm.get_input_embeddings())
    config = _infer_mapper_config(mapper_state, embeddings.weight.shape[1])
    captioner = PrefixCaptioner(config, lm, tokenizer, source=f"clipcap:{ref}")
    captioner.mapper.load_state_dict(mapper_state)
    if gpt_state:  # ClipCap fine-tuned GPT-2 too; its prefix-only variant leaves it stock
        missing, unexpected = lm.load_state_dict(gpt_state, strict=False)
        tied = {"lm_head.weight"} if lm.config.tie_word_embeddings else set()
        if set(missing) - tied or unexpected:
            raise InvalidConfig(
                f"{path} does not fit {lm_ref}: missing {sorted(set(missing) - tied)[:5]}, "
                f"unexpected {sorted(unexpected)[:5]}."
            )
    return captioner.to(device).eval()


def check_clip_width(source: str, expected: int, clip: ClipEncoder, trained_with: str = "") -> None:
    """A captioner maps vectors of one CLIP width: another CLIP would end in a matrix-shape error at the
    first photo, so the mismatch is refused at load time, with the CLIP that fits when it is known."""
    if clip.dim == expected:
        return
    fix = trained_with or (
        "Set CLIPCHAT_CLIP_MODEL to a CLIP that fits, or train a captioner for this one with `clipchat train-captioner`"
    )
    raise InvalidConfig(
        f"Captioner {source} expects {expected}-wide CLIP vectors, but CLIP {clip.identity} gives "
        f"{clip.dim}-wide ones. {fix}."
    )


def _infer_mapper_config(state: dict[str, torch.Tensor], lm_dim: int) -> MapperConfig:
    if "model.0.weight" in state:
        last = max(int(k.split(".")[1]) for k in state if k.startswith("model.") and k.endswith(".weight"))
        clip_dim, out_dim = state["model.0.weight"].shape[1], state[f"model.{last}.weight"].shape[0]
        return MapperConfig(clip_dim=clip_dim, lm_dim=lm_dim, prefix_length=out_dim // lm_dim, kind="mlp")
    if "linear.weight" in state and "prefix_const" in state:
        layers = {int(k.split(".")[2]) for k in state if k.startswith("transformer.layers.")}
        return MapperConfig(
            clip_dim=state["linear.weight"].shape[1],
            lm_dim=lm_dim,
            prefix_length=state["prefix_const"].shape[0],
            clip_length=state["linear.weight"].shape[0] // lm_dim,
            kind="transformer",
            num_layers=len(layers),
        )
    raise InvalidConfig("The checkpoint's mapping network is neither ClipCap's MLP nor its transformer.")


def _local_directory(ref: Ref, cache_dir: Path | None) -> Path:
    if ref.scheme == "hf-hub":
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(ref.target, cache_dir=cache_dir))
    path = Path(ref.target)
    if not path.is_dir():
        raise ModelNotFound(f"Captioner directory {path} does not exist.")
    return path


def _local_file(ref: Ref, cache_dir: Path | None) -> Path:
    if ref.scheme == "hf-hub":
        from huggingface_hub import hf_hub_download

        repo_id, filename = ref.hub_file()
        return Path(hf_hub_download(repo_id, filename, cache_dir=cache_dir))
    path = Path(ref.target)
    if not path.is_file():
        raise ModelNotFound(f"ClipCap checkpoint {path} does not exist.")
    return path
