"""Train a tiny open_clip CLIP contrastively on the synthetic world.

A batch holds distinct scenes, each with one text that is true of it: the full
caption, a phrase naming some attributes ("a red circle"), or a tag prompt
("a photo of a red."), the way web alt-text mixes full sentences and fragments.
A fragment is true of several images in the batch, so the loss uses every true
pair as a positive (multi-positive InfoNCE) rather than only the diagonal.
Each image also meets its own caption with the shape swapped, as a hard negative.
"""

from __future__ import annotations

import itertools
import json
import random
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from .scenes import ATTRIBUTES, BACKGROUNDS, COLOURS, SHAPES, SIZES, Scene, describe, render

# Small enough to train in a few minutes on one CPU core, big enough to separate 240 scenes.
CLIP_CONFIG = {
    "model_cfg": {
        "embed_dim": 64,
        "quick_gelu": False,
        # open_clip's ModifiedResNet: convolutions learn shapes from few samples, where a ViT
        # this small learns colour and background but stays at chance on shape.
        "vision_cfg": {"image_size": 64, "layers": [1, 1, 1, 1], "width": 16},
        "text_cfg": {"context_length": 20, "vocab_size": 49408, "width": 64, "heads": 4, "layers": 2},
    },
    "preprocess_cfg": {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]},
}

VALUES = {"size": SIZES, "colour": tuple(COLOURS), "shape": SHAPES, "background": BACKGROUNDS}


def tag_label(attribute: str, value: str) -> str:
    """The vocabulary label the tagger uses for one attribute value."""
    return f"{value} background" if attribute == "background" else value


def candidate_texts(templates: list[str], seen: set[tuple[int, ...]]) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Every text the trainer may show, with the attribute values it asserts; full captions only of the
    `seen` combinations (codes), so an unseen combination's caption is never shown, not even as a negative.

    Returns (texts, constraints (T, 4) int with -1 for "unsaid", kind (T,) 0=full 1=tag 2=fragment).
    """
    texts, constraints, kinds = [], [], []
    options = [[None, *VALUES[a]] for a in ATTRIBUTES]
    for combo in itertools.product(*options):
        said = dict(zip(ATTRIBUTES, combo))
        if all(v is None for v in combo):
            continue
        full = all(v is not None for v in combo)
        if full and tuple(VALUES[a].index(v) for a, v in said.items()) not in seen:
            continue
        texts.append(describe(**said) + ("." if full else ""))
        constraints.append([VALUES[a].index(v) if v else -1 for a, v in said.items()])
        kinds.append(0 if full else 2)
    for index, attribute in enumerate(ATTRIBUTES):
        for value_index, value in enumerate(VALUES[attribute]):
            for template in templates:
                texts.append(template.format(tag_label(attribute, value)))
                row = [-1] * len(ATTRIBUTES)
                row[index] = value_index
                constraints.append(row)
                kinds.append(1)
    return texts, np.array(constraints), np.array(kinds)


def scene_codes(scenes: list[Scene]) -> np.ndarray:
    return np.array([[VALUES[a].index(getattr(s, a)) for a in ATTRIBUTES] for s in scenes])


def truth_matrix(image_codes: np.ndarray, text_constraints: np.ndarray) -> np.ndarray:
    """(I, T) bool: text t says nothing false about image i."""
    agree = (text_constraints[None, :, :] == -1) | (text_constraints[None, :, :] == image_codes[:, None, :])
    return agree.all(axis=2)


def train_clip(
    out_dir: Path,
    templates: list[str],
    scenes: list[Scene],
    *,
    steps: int = 500,
    batch_size: int = 96,
    renders_per_scene: int = 24,
    seed: int = 0,
    lr: float = 2e-3,
) -> None:
    """Train and save as an open_clip local-dir model (open_clip_config.json + weights)."""
    import open_clip
    from safetensors.torch import save_file

    torch.manual_seed(seed)
    rng = random.Random(seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "open_clip_config.json").write_text(json.dumps(CLIP_CONFIG, indent=2))
    model, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{out_dir}", load_weights=False)
    tokenizer = open_clip.get_tokenizer(f"local-dir:{out_dir}")

    codes = scene_codes(scenes)
    pool = torch.stack(
        [
            torch.stack([preprocess(render(s, rng)) for _ in range(renders_per_scene)])
            for s in tqdm(scenes, desc="rendering", leave=False)
        ]
    )  # (S, R, 3, H, W)
    # Convolutions in channels-last order run about 30% faster on CPU (oneDNN's native layout); the image
    # tower is most of each step's work.
    model.visual.to(memory_format=torch.channels_last)
    texts, constraints, kinds = candidate_texts(templates, {tuple(code) for code in codes})
    tokens = tokenizer(texts)  # (T, context_length)
    truth = truth_matrix(codes, constraints)  # (S, T)
    kind_weights = {0: 0.4, 1: 0.3, 2: 0.3}
    full_caption = {tuple(row): index for index, (row, kind) in enumerate(zip(constraints, kinds)) if kind == 0}

    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.05, fused=True)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps, pct_start=0.1)
    model.train()
    progress = tqdm(range(steps), desc="training CLIP", leave=False)
    for _ in progress:
        batch = rng.sample(range(len(scenes)), batch_size)
        images = pool[batch, torch.randint(renders_per_scene, (batch_size,))].contiguous(
            memory_format=torch.channels_last
        )
        chosen = []
        for s in batch:
            kind = rng.choices(list(kind_weights), weights=list(kind_weights.values()))[0]
            options = np.flatnonzero(truth[s] & (kinds == kind))
            chosen.append(int(rng.choice(options)))
        # NegCLIP-style hard negatives: each image's caption with every other shape. Colour, size and
        # background are global statistics learned in a few steps; shape needs spatial features, and
        # random batches hold too few pairs that differ in shape alone to teach them.
        swapped = [
            (codes[s, 0], codes[s, 1], other, codes[s, 3])
            for s in batch
            for other in range(len(SHAPES))
            if other != codes[s, 2]
        ]
        chosen += [full_caption[key] for key in swapped if key in full_caption]  # seen combinations only
        targets = torch.from_numpy(truth[np.ix_(batch, chosen)]).float()  # (B, T)
        image_features = F.normalize(model.encode_image(images), dim=-1)
        text_features = F.normalize(model.encode_text(tokens[chosen]), dim=-1)
        logits = model.logit_scale.exp() * image_features @ text_features.T
        said = targets.sum(dim=0) > 0  # swapped captions true of no image here have no image to point at
        loss = (_soft_cross_entropy(logits, targets) + _soft_cross_entropy(logits.T[said], targets.T[said])) / 2
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, 4.6052)
        progress.set_postfix(loss=f"{loss.item():.3f}")
    model.visual.to(memory_format=torch.contiguous_format)  # safetensors stores contiguous tensors
    save_file(model.state_dict(), str(out_dir / "open_clip_model.safetensors"))


def _soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    targets = targets / targets.sum(dim=1, keepdim=True)
    return -(targets * logits.log_softmax(dim=1)).sum(dim=1).mean()
