"""CLIP image and text embeddings through open_clip."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from clipchat.errors import InvalidConfig, ModelNotFound

from ..catalog.model_sets import HF_HUB, LOCAL_DIR

log = logging.getLogger(__name__)


class TextEncoder(Protocol):
    """What compares words with a photo in CLIP's space: reranking, guided decoding and the dialogue's checks
    need no more. `ClipEncoder` is one."""

    @property
    def identity(self) -> str: ...
    @property
    def device(self) -> torch.device: ...
    @property
    def logit_scale(self) -> float: ...
    def embed_texts(self, texts: Sequence[str]) -> torch.Tensor: ...


class ClipEncoder:
    """A loaded CLIP: batched, L2-normalised embeddings on one device and dtype."""

    def __init__(
        self,
        model: torch.nn.Module,
        preprocess,
        tokenizer,
        identity: str,
        device: torch.device,
        dtype: torch.dtype,
        batch_size: int = 64,
    ) -> None:
        self.model: Any = model.eval()  # open_clip's CLIP, untyped: its towers and logit_scale are read by name
        self.preprocess = preprocess
        self._preprocess_halves = _split_preprocess(preprocess)  # (Pillow steps, tensor steps)
        self.tokenizer = tokenizer
        self.identity = identity  # stored beside embeddings, so that two models' vectors are never compared
        self.device = device
        self.dtype = dtype
        self.batch_size = batch_size

    @property
    def dim(self) -> int:
        return int(
            self.model.text_projection.shape[1]
            if hasattr(self.model, "text_projection") and self.model.text_projection is not None
            else self.embed_texts(["a"]).shape[1]
        )

    @property
    def logit_scale(self) -> float:
        """CLIP's learned temperature: similarities times this are the logits it was trained on."""
        return float(self.model.logit_scale.detach().exp())

    def preprocess_images(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """(N, 3, H, W) float32 on the model's device: resized, cropped and normalised as this CLIP expects."""
        return self.pixels_from([self.prepare(image) for image in images])

    def prepare(self, image: Image.Image) -> torch.Tensor:
        """The Pillow half of preprocessing: (H, W, 3) uint8, resized and cropped.

        Safe on any thread: it runs no parallel PyTorch op. That matters because every thread
        that does gets its own OpenMP team, and on a small CPU a second team measured the
        model thread 40-50% slower.
        """
        pillow_steps, _ = self._preprocess_halves
        if pillow_steps is None:  # an unfamiliar pipeline: run it whole, here
            return self.preprocess(image)
        return torch.from_numpy(np.array(pillow_steps(image), dtype=np.uint8, copy=True))

    def pixels_from(self, prepared: Sequence[torch.Tensor]) -> torch.Tensor:
        """The tensor half, batched: (N, 3, H, W) float32 on the model's device from `prepare`'s outputs.

        Run it on the model thread. On a GPU the bytes travel as uint8 (a quarter of float32's)
        and are normalised there.
        """
        _, normalize = self._preprocess_halves
        batch = torch.stack(list(prepared)).to(self.device)
        if batch.dtype != torch.uint8:  # `prepare` ran the whole pipeline already
            return batch
        pixels = batch.permute(0, 3, 1, 2).float().div(255)  # what ToTensor does, for the whole batch
        return normalize(pixels) if normalize is not None else pixels

    @torch.inference_mode()
    def embed_pixels(self, pixels: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """(N, 3, H, W) preprocessed pixels -> (N, D) float32 embeddings on the model's device.

        (At fixed batch sizes, replayed as CUDA graphs on a GPU: `vision.fast.graphs.static_image_features`.)
        """
        chunks = []
        for start in range(0, len(pixels), self.batch_size):
            batch = pixels[start : start + self.batch_size].to(self.device, self.dtype)
            chunks.append(self.model.encode_image(batch).float())
        features = torch.cat(chunks) if chunks else torch.empty(0, self.dim, device=self.device)
        return F.normalize(features, dim=-1) if normalize else features

    def embed_images(self, images: Sequence[Image.Image], normalize: bool = True) -> torch.Tensor:
        """(N, D) float32; `normalize=False` gives the raw vectors ClipCap's released weights expect."""
        if not images:
            return torch.empty(0, self.dim, device=self.device)
        return self.embed_pixels(self.preprocess_images(images), normalize=normalize)

    @torch.inference_mode()
    def embed_texts(self, texts: Sequence[str]) -> torch.Tensor:
        """(N, D) float32, L2-normalised. Texts longer than CLIP's context are truncated by its tokenizer."""
        chunks = []
        for start in range(0, len(texts), self.batch_size * 4):
            tokens = self.tokenizer(list(texts[start : start + self.batch_size * 4])).to(self.device)
            chunks.append(self.model.encode_text(tokens).float())
        return F.normalize(torch.cat(chunks), dim=-1)


def _split_preprocess(preprocess):
    """open_clip's Compose as (the Pillow steps before ToTensor, the tensor steps after it), or (None, None)."""
    steps = getattr(preprocess, "transforms", None)
    if steps is None:
        return None, None
    from torchvision.transforms import Compose

    for position, step in enumerate(steps):
        if type(step).__name__.endswith("ToTensor"):
            after = steps[position + 1 :]
            return Compose(steps[:position]), (Compose(after) if after else None)
    return None, None


# transformers ids of OpenAI's CLIPs, which people paste from model cards, and the same weights in open_clip
# (the -quickgelu variants: OpenAI trained with QuickGELU, and the plain configs would run it with GELU).
TRANSFORMERS_IDS = {
    "openai/clip-vit-base-patch32": "ViT-B-32-quickgelu",
    "openai/clip-vit-base-patch16": "ViT-B-16-quickgelu",
    "openai/clip-vit-large-patch14": "ViT-L-14-quickgelu",
    "openai/clip-vit-large-patch14-336": "ViT-L-14-336-quickgelu",
}
RANDOM_WEIGHTS_SETTING = "CLIPCHAT_ALLOW_RANDOM_WEIGHTS"


def is_builtin_reference(name: str) -> bool:
    """An open_clip config name (weights chosen by a pretrained tag), not hf-hub:/local-dir:."""
    return not name.startswith((LOCAL_DIR, HF_HUB))


def check_clip_reference(name: str, pretrained: str | None, allow_random_weights: bool = False) -> None:
    """Refuse, in one line that names the fix, a CLIP reference that would fail or would load random weights.

    Cheap (no weights are read), so `clipchat doctor` asks it too.
    """
    import open_clip

    if name.startswith(HF_HUB) and name[len(HF_HUB) :].strip("/").lower() in TRANSFORMERS_IDS:
        raise ModelNotFound(unknown_clip_message(name[len(HF_HUB) :], open_clip.list_models()))
    if not is_builtin_reference(name):
        return
    if name not in open_clip.list_models():
        raise ModelNotFound(unknown_clip_message(name, open_clip.list_models()))
    tags = open_clip.list_pretrained_tags_by_model(name)
    if pretrained is None:
        if allow_random_weights:
            return
        hint = (
            f"choose its weights with CLIPCHAT_CLIP_PRETRAINED ({', '.join(tags)})"
            if tags
            else "open_clip has no pretrained weights for it: pick another CLIP"
        )
        raise InvalidConfig(
            f"CLIP {name} has no pretrained tag, so it would run on random weights: {hint}, "
            f"or set {RANDOM_WEIGHTS_SETTING}=true if random weights are what you want."
        )
    if pretrained not in tags and not Path(pretrained).expanduser().is_file():  # open_clip also takes a file
        raise InvalidConfig(
            f"open_clip has no {pretrained!r} weights for CLIP {name}: set CLIPCHAT_CLIP_PRETRAINED "
            f"to one of {', '.join(tags)}."
            if tags
            else f"open_clip has no pretrained weights for CLIP {name}: pick another CLIP."
        )


def unknown_clip_message(name: str, known: Sequence[str]) -> str:
    """One short line: the open_clip equivalent of a transformers id, or the closest names (`ViT-L/14` -> ViT-L-14)."""
    import difflib

    if name.lower().strip("/") in TRANSFORMERS_IDS:
        equivalent = TRANSFORMERS_IDS[name.lower().strip("/")]
        return (
            f"{name} is a Hugging Face transformers id; clipchat loads CLIP through open_clip, where the same "
            f"weights are CLIPCHAT_CLIP_MODEL={equivalent} with CLIPCHAT_CLIP_PRETRAINED=openai."
        )
    by_lower = {known_name.lower(): known_name for known_name in known}
    normalised = name.replace("/", "-").lower()
    close = (
        [normalised]
        if normalised in by_lower
        else difflib.get_close_matches(normalised, list(by_lower), n=3, cutoff=0.6)
    )
    guess = (
        f"did you mean {', '.join(by_lower[match] for match in close)}?"
        if close
        else "open_clip's names look like ViT-B-32-quickgelu (open_clip.list_models() lists them all)"
    )
    return f"Unknown CLIP model {name!r}: {guess} Or use hf-hub:ORG/REPO or local-dir:PATH."


def load_clip(
    name: str,
    pretrained: str | None,
    device: torch.device,
    dtype: torch.dtype,
    cache_dir: Path | None = None,
    *,
    allow_random_weights: bool = False,
) -> ClipEncoder:
    """Load by open_clip name plus pretrained tag, `hf-hub:ORG/REPO` or `local-dir:PATH`: one code path.

    A built-in name without a tag is refused unless `allow_random_weights`: open_clip would build it
    with random weights and only log a warning, and every caption and tag would be noise.
    """
    import open_clip

    if name.startswith(LOCAL_DIR):
        folder = Path(name[len(LOCAL_DIR) :])
        if not (folder / "open_clip_config.json").is_file():
            raise ModelNotFound(f"{folder} is not an open_clip model directory: it has no open_clip_config.json.")
        if not any(folder.glob("*.safetensors")) and not any(folder.glob("*.bin")) and not any(folder.glob("*.pth")):
            raise ModelNotFound(f"{folder} has a CLIP config but no weights file.")
    check_clip_reference(name, pretrained, allow_random_weights)
    # open_clip warns, and runs on, when OpenAI's weights (trained with QuickGELU) load into a GELU config
    # such as ViT-B-32; giving that config the activation its weights expect avoids the quiet loss.
    quick_gelu = bool(
        is_builtin_reference(name) and pretrained and open_clip.get_pretrained_cfg(name, pretrained).get("quick_gelu")
    )
    precision = {torch.float16: "fp16", torch.bfloat16: "bf16"}.get(dtype, "fp32")
    try:
        model, _, preprocess = open_clip.create_model_and_transforms(
            name,
            pretrained=pretrained,
            precision=precision,
            device=device,
            force_quick_gelu=quick_gelu,
            cache_dir=str(cache_dir) if cache_dir else None,
        )
    except (OSError, RuntimeError) as error:  # open_clip reports a failed download as RuntimeError
        reason = str(error).rstrip(".")
        raise ModelNotFound(
            f"Could not load CLIP {name} ({pretrained or 'no pretrained tag'}): {reason}. "
            "If this machine is offline, run `clipchat prefetch` where it can reach the "
            "Hugging Face Hub."
        ) from error
    tokenizer = open_clip.get_tokenizer(name)
    identity = clip_identity(name, pretrained)
    if quick_gelu and not name.endswith("-quickgelu"):  # its vectors differ from what this name gave before
        identity += "+quickgelu"
    return ClipEncoder(model, preprocess, tokenizer, identity, device, dtype)


def clip_identity(name: str, pretrained: str | None) -> str:
    """A stable name for the weights: the reference, plus a content hash for local directories."""
    if not name.startswith(LOCAL_DIR):
        return f"{name}/{pretrained}" if pretrained else name
    folder = Path(name[len(LOCAL_DIR) :])
    digest = hashlib.sha256()
    for path in sorted(folder.glob("*")):
        if path.suffix in (".safetensors", ".bin", ".pth", ".json"):
            digest.update(path.name.encode())
            size = path.stat().st_size
            with path.open("rb") as handle:  # head, tail and size tell weight files apart without reading GBs
                digest.update(handle.read(1 << 20))
                handle.seek(max(0, size - (1 << 20)))
                digest.update(handle.read(1 << 20))
            digest.update(str(size).encode())
    return f"{folder.name}#{digest.hexdigest()[:12]}"
