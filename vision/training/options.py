"""How a captioner is trained: the one place its defaults are written (`clipchat train-captioner` reads them).

Only the standard library here, so that building the command line costs no import of torch or transformers.
"""

from __future__ import annotations

from dataclasses import dataclass

from clipchat.errors import InvalidConfig


@dataclass(frozen=True)
class TrainingOptions:
    epochs: int = 10  # ClipCap's COCO schedule
    batch_size: int = 40  # ClipCap's
    lr: float = 2e-5  # ClipCap's, for GPT-2 fine-tuning; a mapper alone tolerates far more
    warmup_fraction: float = 0.05  # linear warm-up, then linear decay to zero
    prefix_length: int = 10
    mapper: str = "mlp"
    clip_length: int = 10  # transformer mapper only
    num_layers: int = 8  # transformer mapper only
    finetune_language_model: bool = False  # ClipCap's MLP results fine-tune GPT-2; the transformer keeps it frozen
    normalize_prefix: bool = True  # unit vectors make the mapper indifferent to a CLIP's typical norm
    max_caption_tokens: int = 40
    seed: int = 0
    validation_fraction: float = 0.0  # of the images, never trained on; 0 trains on all (the command line asks 0.1)

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0:
            raise InvalidConfig("epochs, batch size and learning rate must be positive.")
        if not 0 <= self.validation_fraction < 1:
            raise InvalidConfig("the validation fraction must be at least 0 and below 1 (e.g. 0.1).")
        if self.mapper not in ("mlp", "transformer"):
            raise InvalidConfig("mapper must be 'mlp' or 'transformer'.")
