"""CLIP image and text embeddings through open_clip."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from clipchat.errors import ModelNotFound

from .model_sets import LOCAL_DIR

log = logging.getLogger(__name__)


class ClipEncoder:
    """A loaded CLIP: batched, L2-normalised embeddings on one device and dtype."""

    def __init__(self, model: torch.nn.Module, preprocess, tokenizer, identity: str,
                 device: torch.device, dtype: torch.dtype, batch_size: int = 64) -> None:
        self.model = model.eval()
        self.preprocess = preprocess
        self._preprocess_halves = _split_preprocess(preprocess)  # (Pillow steps, tensor steps)
        self.tokenizer = tokenizer
        self.identity = identity  # stored beside embeddings, so that two models' vectors are never compared
        self.device = device
        self.dtype = dtype
        self.batch_size = batch_size

    @property
    def dim(self) -> int:
        return int(self.model.text_projection.shape[1] if hasattr(self.model, "text_projection")
                   and self.model.text_projection is not None else self.embed_texts(["a"]).shape[1])

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
        """(N, 3, H, W) preprocessed pixels -> (N, D) float32 embeddings on the model's device."""
        chunks = []
        for start in range(0, len(pixels), self.batch_size):
            batch = pixels[start:start + self.batch_size].to(self.device, self.dtype)
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
            tokens = self.tokenizer(list(texts[start:start + self.batch_size * 4])).to(self.device)
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
            after = steps[position + 1:]
            return Compose(steps[:position]), (Compose(after) if after else None)
    return None, None


def load_clip(name: str, pretrained: str | None, device: torch.device, dtype: torch.dtype,
              cache_dir: Path | None = None) -> ClipEncoder:
    """Load by open_clip name plus pretrained tag, `hf-hub:ORG/REPO` or `local-dir:PATH`: one code path."""
    import open_clip

    if name.startswith(LOCAL_DIR):
        folder = Path(name[len(LOCAL_DIR):])
        if not (folder / "open_clip_config.json").is_file():
            raise ModelNotFound(f"{folder} is not an open_clip model directory: it has no open_clip_config.json.")
        if not any(folder.glob("*.safetensors")) and not any(folder.glob("*.bin")) and not any(folder.glob("*.pth")):
            raise ModelNotFound(f"{folder} has a CLIP config but no weights file.")
    elif not name.startswith("hf-hub:") and name not in open_clip.list_models():
        raise ModelNotFound(f"Unknown CLIP model {name!r}. open_clip knows: {', '.join(open_clip.list_models())}; "
                            "or use hf-hub:ORG/REPO or local-dir:PATH.")
    precision = {torch.float16: "fp16", torch.bfloat16: "bf16"}.get(dtype, "fp32")
    try:
        model, _, preprocess = open_clip.create_model_and_transforms(
            name, pretrained=pretrained, precision=precision, device=device,
            cache_dir=str(cache_dir) if cache_dir else None)
    except (OSError, RuntimeError) as error:  # open_clip reports a failed download as RuntimeError
        reason = str(error).rstrip(".")
        raise ModelNotFound(f"Could not load CLIP {name} ({pretrained or 'no pretrained tag'}): {reason}. "
                            "If this machine is offline, run `clipchat prefetch` where it can reach the "
                            "Hugging Face Hub.") from error
    tokenizer = open_clip.get_tokenizer(name)
    return ClipEncoder(model, preprocess, tokenizer, clip_identity(name, pretrained), device, dtype)


def clip_identity(name: str, pretrained: str | None) -> str:
    """A stable name for the weights: the reference, plus a content hash for local directories."""
    if not name.startswith(LOCAL_DIR):
        return f"{name}/{pretrained}" if pretrained else name
    folder = Path(name[len(LOCAL_DIR):])
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
