"""Training a captioner from a captions file: formats, the embedding cache, checkpoints and resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from bot.ops.cli import main as clipchat
from clipchat.errors import ClipchatError
from vision.training.datasets import read_captions


def small_coco_file(world_dir: Path, tmp_path: Path, count: int = 48) -> Path:
    """The first `count` training images, rewritten as a COCO captions file with two captions each."""
    rows = [json.loads(line) for line in (world_dir / "data" / "train" / "captions.jsonl").read_text().splitlines()]
    rows = rows[:: len(rows) // count][:count]
    coco = {
        "images": [{"id": i, "file_name": row["image"]} for i, row in enumerate(rows)],
        "annotations": [
            {"image_id": i, "caption": caption}
            for i, row in enumerate(rows)
            for caption in (row["caption"], row["caption"].rstrip(".") + " .")
        ],
    }
    path = tmp_path / "coco.json"
    path.write_text(json.dumps(coco))
    return path


class RunsOnLoad:
    """Pickled, it says "call open(path, 'w')" to whoever unpickles it: code run by loading a file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (str(self.path), "w"))


def test_captions_files_in_both_formats(world_dir: Path, tmp_path: Path) -> None:
    coco = read_captions(small_coco_file(world_dir, tmp_path), images_dir=world_dir / "data" / "train")
    assert len(coco) == 48 and all(len(item.captions) == 2 and item.image.is_file() for item in coco)
    jsonl = read_captions(world_dir / "data" / "heldout" / "captions.jsonl")
    assert len(jsonl) == 240 and jsonl[0].image.parent == world_dir / "data" / "heldout"
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"image": "a.png", "caption": "fine"}\n{"picture": "b.png"}\n')
    with pytest.raises(ClipchatError, match=r"broken\.jsonl:2"):
        read_captions(broken)


def test_train_checkpoint_and_resume(world_dir: Path, tmp_path: Path, capsys) -> None:
    captions = small_coco_file(world_dir, tmp_path)
    out = tmp_path / "captioner"
    common = [
        str(captions),
        "--images",
        str(world_dir / "data" / "train"),
        "--out",
        str(out),
        "--models",
        str(world_dir / "guided"),
        "--device",
        "cpu",
        "--prefix-length",
        "2",
        "--batch-size",
        "16",
        "--lr",
        "1e-3",
    ]
    assert clipchat(["train-captioner", *common, "--epochs", "1"]) == 0
    assert torch.load(out / "checkpoint.pt", weights_only=True)["epoch"] == 1  # tensors and plain values only
    embeddings = out / "clip-embeddings.safetensors"
    embedded_at = embeddings.stat().st_mtime_ns
    assert "CLIPCHAT_CAPTIONER=local-dir:" in capsys.readouterr().out

    assert clipchat(["train-captioner", *common, "--epochs", "2", "--resume"]) == 0
    assert torch.load(out / "checkpoint.pt", weights_only=True)["epoch"] == 2
    assert embeddings.stat().st_mtime_ns == embedded_at  # CLIP vectors were computed once
    manifest = json.loads((out / "captioner.json").read_text())
    assert manifest["mapper"]["prefix_length"] == 2 and manifest["language_model"].startswith("local-dir:")

    assert clipchat(["train-captioner", *common[:-2], "--lr", "5e-4", "--epochs", "3", "--resume"]) == 2
    assert "other options" in capsys.readouterr().err

    # A checkpoint is a pickle: one that someone else wrote into --out must not run code on --resume
    honest = torch.load(out / "checkpoint.pt", weights_only=True)
    ran = tmp_path / "code-ran"
    torch.save({**honest, "history": RunsOnLoad(ran)}, out / "checkpoint.pt")
    code = clipchat(["train-captioner", *common, "--epochs", "3", "--resume"])
    assert not ran.exists()
    assert code == 2
    assert "not load" in capsys.readouterr().err


def test_train_captioner_defaults_are_the_training_options() -> None:
    """One source: the command line shows and uses TrainingOptions' defaults, and reading them at start-up
    costs no import of the trainer (torch, transformers) for every other `clipchat` command."""
    import subprocess
    import sys

    from bot.ops.cli import build_parser
    from vision.training.options import TrainingOptions

    args = build_parser().parse_args(["train-captioner", "captions.jsonl", "--out", "out"])
    library = TrainingOptions()
    assert {
        name: getattr(args, name) for name in ("epochs", "batch_size", "lr", "prefix_length", "mapper", "seed")
    } == {name: getattr(library, name) for name in ("epochs", "batch_size", "lr", "prefix_length", "mapper", "seed")}
    assert (args.finetune_gpt2, not args.no_normalize_prefix) == (
        library.finetune_language_model,
        library.normalize_prefix,
    )
    assert args.validation_fraction == 0.1  # the one the command line chooses for itself, on purpose
    loaded = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from bot.ops.cli import build_parser; build_parser(); print(sorted(sys.modules))",
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[1],
    ).stdout
    assert "'vision.training.options'" in loaded and "'vision.training.trainer'" not in loaded
