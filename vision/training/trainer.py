"""Train a prefix captioner (the mapping network, optionally GPT-2 too) from a captions file.

CLIP vectors are computed once and kept beside the output; every epoch ends
with a checkpoint, and `resume=True` continues from the last one. A fixed share of
the images is held out: their loss after every epoch goes into the loss history
(JSON and PNG, `learning_curve`), which also says when training stopped too early.
"""

from __future__ import annotations

import hashlib
import json
import logging
import pickle
import random
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image
from tqdm import tqdm
from transformers import get_linear_schedule_with_warmup

from clipchat.errors import BadImage, InvalidConfig

from ..intake.images import load_image
from ..models.captioner import PrefixCaptioner
from ..models.mapper import MapperConfig
from .datasets import CaptionedImage
from .learning_curve import CURVE, HISTORY, EpochLoss, LossHistory, save_history, still_falling
from .options import TrainingOptions

log = logging.getLogger(__name__)

CHECKPOINT = "checkpoint.pt"
EMBEDDINGS = "clip-embeddings.safetensors"


@dataclass(frozen=True)
class TrainedCaptioner:
    captioner: PrefixCaptioner
    history: LossHistory
    history_file: Path
    curve_file: Path
    warning: str | None  # "validation loss was still falling ...: train longer", when it was


def split_for_validation(images: list[Path], fraction: float) -> tuple[list[int], list[int]]:
    """(training, validation) positions in `images`: the `fraction` whose names hash lowest are held out.

    By name, under a fixed salt: reruns, resumes, another --seed and a reordered captions file all hold out the
    same images, so validation losses stay comparable. Whole images are held out, every caption of them.
    """
    if fraction == 0:
        return list(range(len(images))), []
    held = round(len(images) * fraction)
    if held < 1 or held >= len(images):
        raise InvalidConfig(
            f"{len(images)} readable images are too few to hold out {fraction:g} of them for validation "
            f"(that leaves {'no image to validate on' if held < 1 else 'none to train on'}): give more images, "
            "another --validation-fraction, or --validation-fraction 0 to train without validation."
        )
    order = sorted(
        range(len(images)),
        key=lambda i: (hashlib.sha256(f"clipchat-validation:{images[i].name}".encode()).hexdigest(), str(images[i])),
    )
    return sorted(order[held:]), sorted(order[:held])


def embed_dataset(
    encoder, data: list[CaptionedImage], out_dir: Path, progress: bool = True
) -> tuple[torch.Tensor, list[int]]:
    """Raw CLIP vectors of every readable image, cached in `out_dir`; returns (vectors, kept indices)."""
    from safetensors.torch import load_file, save_file

    key = {"clip": encoder.identity, "images": [str(item.image) for item in data]}
    cache, meta = out_dir / EMBEDDINGS, out_dir / "clip-embeddings.json"
    if cache.is_file() and meta.is_file() and json.loads(meta.read_text()).get("key") == key:
        stored = load_file(str(cache))
        return stored["vectors"], stored["kept"].tolist()
    vectors: list[torch.Tensor] = []
    kept: list[int] = []
    skipped = 0
    batch_images: list[Image.Image] = []
    batch_indices: list[int] = []

    def flush() -> None:
        if batch_images:
            vectors.append(encoder.embed_images(batch_images, normalize=False).cpu())
            kept.extend(batch_indices)
            batch_images.clear()
            batch_indices.clear()

    for index, item in enumerate(tqdm(data, desc="CLIP embeddings", disable=not progress, unit="img")):
        try:
            batch_images.append(load_image(item.image.read_bytes()))
            batch_indices.append(index)
        except (OSError, BadImage) as error:
            skipped += 1
            log.warning("skipping %s: %s", item.image, getattr(error, "detail", error))
        if len(batch_images) >= encoder.batch_size:
            flush()
    flush()
    if not kept:
        raise InvalidConfig("None of the images in the captions file could be read.")
    if skipped:
        log.warning("skipped %d unreadable images of %d", skipped, len(data))
    all_vectors = torch.cat(vectors)
    out_dir.mkdir(parents=True, exist_ok=True)
    save_file({"vectors": all_vectors.contiguous(), "kept": torch.tensor(kept)}, str(cache))
    meta.write_text(json.dumps({"key": key}))
    return all_vectors, kept


def train_captioner(
    encoder,
    lm,
    tokenizer,
    data: list[CaptionedImage],
    out_dir: Path,
    options: TrainingOptions = TrainingOptions(),
    *,
    resume: bool = False,
    language_model_ref: str = "",
    progress: bool = True,
    on_epoch: Callable[[EpochLoss, int], None] | None = None,
) -> TrainedCaptioner:
    """Train and save to `out_dir` in clipchat's captioner format, with the loss history beside it.

    `on_epoch(losses, epochs)` hears each finished epoch (the command line prints it).
    """
    torch.manual_seed(options.seed)
    random.seed(options.seed)
    vectors, kept = embed_dataset(encoder, data, out_dir, progress)
    training, validation = split_for_validation([data[index].image for index in kept], options.validation_fraction)
    if not validation:
        log.info("training on every image, none held out: no validation loss, no 'train longer' warning")
    rows = _caption_rows(data, kept, training)
    tokens, mask = _tokenize([caption for _, caption in rows], tokenizer, options.max_caption_tokens)
    clip_rows = torch.tensor([row for row, _ in rows])

    config = MapperConfig(
        clip_dim=vectors.shape[1],
        lm_dim=lm.get_input_embeddings().weight.shape[1],
        prefix_length=options.prefix_length,
        kind=options.mapper,
        clip_length=options.clip_length,
        num_layers=options.num_layers,
        normalize_prefix=options.normalize_prefix,
    )
    lm = lm.float()
    captioner = PrefixCaptioner(config, lm, tokenizer, source=str(out_dir)).to(encoder.device)
    lm.requires_grad_(options.finetune_language_model)
    trainable = [p for p in captioner.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=options.lr)
    steps_per_epoch = -(-len(rows) // options.batch_size)
    total = steps_per_epoch * options.epochs
    schedule = get_linear_schedule_with_warmup(optimizer, max(1, int(total * options.warmup_fraction)), total)

    device = encoder.device
    validation_loss = _validation_scorer(
        captioner, vectors, _caption_rows(data, kept, validation), tokenizer, options, device
    )
    history = LossHistory(validation_images=len(validation), training_images=len(training))
    start_epoch = 0
    checkpoint_path = out_dir / CHECKPOINT
    if resume and checkpoint_path.is_file():
        state = _load_checkpoint(checkpoint_path)
        saved = {"validation_fraction": 0.0, **state["options"]}  # checkpoints from before validation had none
        differing = [
            f"{key}: {saved.get(key)} then, {value} now"
            for key, value in _comparable(asdict(options)).items()
            if saved.get(key) != value
        ]
        if differing:
            raise InvalidConfig(
                f"{checkpoint_path} was trained with other options ({'; '.join(differing)}); "
                "start afresh without --resume."
            )
        captioner.mapper.load_state_dict(state["mapper"])
        if options.finetune_language_model:
            lm.load_state_dict(state["language_model"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        torch.set_rng_state(state["rng"])
        start_epoch = state["epoch"]
        if "history" in state:
            history = LossHistory.from_dict(state["history"])
        log.info("resuming from epoch %d of %d", start_epoch, options.epochs)
    if start_epoch == 0:
        history.initial_validation_loss = validation_loss()

    for epoch in range(start_epoch, options.epochs):
        captioner.mapper.train()
        lm.train(options.finetune_language_model)  # a frozen GPT-2 stays in eval mode: no dropout noise
        order = torch.randperm(len(rows))
        bar = tqdm(range(steps_per_epoch), desc=f"epoch {epoch + 1}/{options.epochs}", disable=not progress)
        loss_sum, token_count = 0.0, 0
        for step in bar:
            batch = order[step * options.batch_size : (step + 1) * options.batch_size]
            logits = captioner(vectors[clip_rows[batch]].to(device), tokens[batch].to(device), mask[batch].to(device))
            targets = tokens[batch].to(device).masked_fill(mask[batch].to(device) == 0, -100)
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-100)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            counted = int(mask[batch].sum())
            loss_sum, token_count = loss_sum + loss.item() * counted, token_count + counted
            bar.set_postfix(loss=f"{loss.item():.3f}")
        history.epochs = history.epochs[:epoch]  # a resumed run rewrites what came after its checkpoint
        history.epochs.append(
            EpochLoss(epoch + 1, (epoch + 1) * steps_per_epoch, loss_sum / token_count, validation_loss())
        )
        _save_checkpoint(checkpoint_path, captioner, optimizer, schedule, epoch + 1, options, history)
        save_history(history, out_dir)  # each epoch: an interrupted run still shows its curve
        if on_epoch:
            on_epoch(history.epochs[-1], options.epochs)

    captioner.eval()
    captioner.save(
        out_dir,
        bundle_language_model=options.finetune_language_model,
        language_model_ref=language_model_ref,
        trained_with_clip=encoder.identity,
    )
    history_file, curve_file = (
        save_history(history, out_dir) if start_epoch >= options.epochs else (out_dir / HISTORY, out_dir / CURVE)
    )  # resume found nothing left to train: still write them
    warning = still_falling(history, options.epochs)
    if warning:
        log.warning("%s", warning)
    return TrainedCaptioner(captioner, history, history_file, curve_file, warning)


def _caption_rows(data: list[CaptionedImage], kept: list[int], positions: list[int]) -> list[tuple[int, str]]:
    """(row of `vectors`, caption) for every caption of the images at `positions` of `kept`."""
    return [(position, caption) for position in positions for caption in data[kept[position]].captions]


def _validation_scorer(
    captioner: PrefixCaptioner,
    vectors: torch.Tensor,
    rows: list[tuple[int, str]],
    tokenizer,
    options: TrainingOptions,
    device,
) -> Callable[[], float | None]:
    """A function giving the mean cross-entropy per token over the held-out captions (None without any)."""
    if not rows:
        return lambda: None
    tokens, mask = _tokenize([caption for _, caption in rows], tokenizer, options.max_caption_tokens)
    clip_rows = torch.tensor([row for row, _ in rows])

    @torch.no_grad()
    def score() -> float:
        was_training = [module.training for module in (captioner.mapper, captioner.lm)]
        captioner.mapper.eval()  # no dropout: the same weights always score the same
        captioner.lm.eval()
        total, count = 0.0, 0
        for start in range(0, len(rows), options.batch_size):
            batch = slice(start, start + options.batch_size)
            logits = captioner(vectors[clip_rows[batch]].to(device), tokens[batch].to(device), mask[batch].to(device))
            targets = tokens[batch].to(device).masked_fill(mask[batch].to(device) == 0, -100)
            total += F.cross_entropy(
                logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-100, reduction="sum"
            ).item()
            count += int(mask[batch].sum())
        captioner.mapper.train(was_training[0])
        captioner.lm.train(was_training[1])
        return total / count

    return score


def _load_checkpoint(path: Path) -> dict:
    """A checkpoint's tensors and plain values. It is a pickle, and unpickling anything else runs code
    chosen by whoever wrote the file, so only what `_save_checkpoint` writes is accepted."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise InvalidConfig(
            f"{path} holds more than tensors and plain values, so it was not loaded (that could run code "
            "hidden in it); start afresh without --resume, or remove it."
        ) from error


def _comparable(options: dict) -> dict:
    """Options that must match to resume; more epochs may be asked for."""
    return {k: v for k, v in options.items() if k != "epochs"}


def _tokenize(captions: list[str], tokenizer, max_tokens: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, T) token ids ending in end-of-text, and their (N, T) mask; T is the longest kept length."""
    encoded = [
        [*tokenizer.encode(c, add_special_tokens=False)[: max_tokens - 1], tokenizer.eos_token_id] for c in captions
    ]
    width = max(len(ids) for ids in encoded)
    tokens = torch.zeros(len(encoded), width, dtype=torch.long)
    mask = torch.zeros(len(encoded), width, dtype=torch.long)
    for row, ids in enumerate(encoded):
        tokens[row, : len(ids)] = torch.tensor(ids)
        mask[row, : len(ids)] = 1
    return tokens, mask


def _save_checkpoint(
    path: Path,
    captioner: PrefixCaptioner,
    optimizer,
    schedule,
    epoch: int,
    options: TrainingOptions,
    history: LossHistory,
) -> None:
    state = {
        "mapper": captioner.mapper.state_dict(),
        "optimizer": optimizer.state_dict(),
        "schedule": schedule.state_dict(),
        "epoch": epoch,
        "options": asdict(options),
        "rng": torch.get_rng_state(),
        "history": history.to_dict(),
    }
    if options.finetune_language_model:
        state["language_model"] = captioner.lm.state_dict()
    partial = path.with_suffix(".partial")
    torch.save(state, partial)
    partial.replace(path)  # a crash mid-save leaves the previous checkpoint intact
