"""What an operator sees of training and evaluation: per-epoch losses, the loss history and curve, the
"train longer" warning (and its absence), and the HTML contact sheet of `evaluate --report`."""

from __future__ import annotations

import json
import logging
import re
from html.parser import HTMLParser
from pathlib import Path

from PIL import Image

from bot.ops.cli import main as clipchat
from tests.test_training import small_coco_file
from vision.training.trainer import split_for_validation

STILL_FALLING = "validation loss was still falling at the end"


def train(world_dir: Path, captions: Path, out: Path, *extra: str) -> int:
    return clipchat(
        [
            "train-captioner",
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
            "8",
            "--validation-fraction",
            "0.25",
            *extra,
        ]
    )


def test_too_short_a_run_says_train_longer(world_dir: Path, tmp_path: Path, capsys, caplog) -> None:
    captions, out = small_coco_file(world_dir, tmp_path), tmp_path / "captioner"
    with caplog.at_level(logging.WARNING):
        assert train(world_dir, captions, out, "--epochs", "2", "--lr", "1e-3") == 0
    printed = capsys.readouterr()
    [warning] = [line for line in printed.err.splitlines() if STILL_FALLING in line]
    assert "over the last 2 epochs): train longer, e.g. --epochs 4" in warning
    assert any(STILL_FALLING in record.getMessage() for record in caplog.records)  # logged as well as printed
    epoch_lines = [line for line in printed.out.splitlines() if line.startswith("epoch ")]
    assert len(epoch_lines) == 2, printed.out
    assert all(
        re.fullmatch(r"epoch \d/2 \(\d+ steps\): train loss \d\.\d{4}, validation loss \d\.\d{4}", line)
        for line in epoch_lines
    ), epoch_lines

    history = json.loads((out / "loss-history.json").read_text())
    assert [row["epoch"] for row in history["epochs"]] == [1, 2]
    assert history["validation_images"] == 12 and history["training_images"] == 36  # a quarter of 48 held out
    assert all(row["validation_loss"] > 0 and row["train_loss"] > 0 for row in history["epochs"])
    assert history["epochs"][-1]["steps"] == 2 * 9  # 36 images x 2 captions in batches of 8, twice
    assert history["initial_validation_loss"] > history["epochs"][-1]["validation_loss"]
    curve = out / "loss-curve.png"
    assert curve.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(curve) as image:
        assert image.format == "PNG" and image.width >= 300

    # Too few images for the share asked: refused in a sentence that says what to do, before any training.
    assert train(world_dir, captions, tmp_path / "other", "--validation-fraction", "0.005") == 2
    refusal = capsys.readouterr().err
    assert "too few to hold out" in refusal and "--validation-fraction 0" in refusal
    assert not (tmp_path / "other" / "checkpoint.pt").exists()


def test_a_finished_run_does_not_warn(world_dir: Path, tmp_path: Path, capsys) -> None:
    captions, out = small_coco_file(world_dir, tmp_path), tmp_path / "captioner"
    assert train(world_dir, captions, out, "--epochs", "20", "--lr", "3e-3") == 0
    printed = capsys.readouterr()
    assert STILL_FALLING not in printed.err and "Loss history:" in printed.out
    losses = [row["validation_loss"] for row in json.loads((out / "loss-history.json").read_text())["epochs"]]
    assert len(losses) == 20 and losses[-1] < losses[0]  # it learned, then levelled off

    # The held-out images are chosen by name: another order of the captions file holds out the same ones.
    images = [Path(f"photos/{index:05d}.png") for index in range(40)]
    _, held = split_for_validation(images, 0.25)
    _, held_reversed = split_for_validation(images[::-1], 0.25)
    assert len(held) == 10 and {images[i] for i in held} == {images[::-1][i] for i in held_reversed}


class ContactSheet(HTMLParser):
    """The rows of the report as a reader sees them: each photo's path, score and texts."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[dict[str, str]] = []
        self.cell: str | None = None
        self.tags: list[str] = []
        self.images: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        classes = dict(attrs).get("class") or ""
        if tag == "tr" and "photo" in classes:
            self.rows.append({"path": "", "score": "", "caption": "", "text": ""})
        elif tag == "img":
            self.images.append(dict(attrs)["src"] or "")
        self.cell = classes if tag in ("td", "div") and classes else self.cell

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "div"):
            self.cell = None

    def handle_data(self, data: str) -> None:
        if self.rows:
            row = self.rows[-1]
            row["text"] += data
            if self.cell in ("path", "score", "caption"):
                row[self.cell] += data.strip()


def test_evaluate_report_is_a_contact_sheet_worst_first(world_dir: Path, tmp_path: Path, capsys) -> None:
    heldout = world_dir / "data" / "heldout"
    rows = [json.loads(line) for line in (heldout / "captions.jsonl").read_text().splitlines()][:5]
    rows[1]["caption"] = "<script>alert('owned')</script> a caption from an untrusted file"
    captions = tmp_path / "captions.jsonl"
    captions.write_text("".join(json.dumps({"image": row["image"], "caption": row["caption"]}) + "\n" for row in rows))
    report = tmp_path / "report"
    assert (
        clipchat(
            [
                "evaluate",
                str(captions),
                "--images",
                str(heldout),
                "--models",
                str(world_dir),
                "--device",
                "cpu",
                "--report",
                str(report),
            ]
        )
        == 0
    )
    assert f"Report: {report / 'index.html'}" in capsys.readouterr().out

    sheet = ContactSheet()
    sheet.feed((report / "index.html").read_text(encoding="utf-8"))
    assert "script" not in sheet.tags  # the untrusted caption stayed text
    assert sorted(row["path"] for row in sheet.rows) == sorted(str(heldout / row["image"]) for row in rows)
    scores = [float(row["score"]) for row in sheet.rows]
    assert scores == sorted(scores)  # worst CLIPScore first
    [untrusted] = [row for row in sheet.rows if row["path"].endswith(rows[1]["image"])]
    assert "<script>alert('owned')</script>" in untrusted["text"]
    assert all(row["caption"] and "(" in row["text"] for row in sheet.rows)  # a predicted caption and scored tags
    assert len(sheet.images) == 5
    for source in sheet.images:
        with Image.open(report / source) as thumbnail:
            assert thumbnail.format == "JPEG" and max(thumbnail.size) <= 224
