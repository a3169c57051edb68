"""Captions files: COCO-style JSON, or JSON Lines of image path plus caption."""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from clipchat.errors import InvalidConfig


@dataclass(frozen=True)
class CaptionedImage:
    image: Path
    captions: tuple[str, ...]  # every reference caption of this image


def read_captions(path: Path, images_dir: Path | None = None) -> list[CaptionedImage]:
    """Read `path`; image paths are relative to `images_dir`, else to the file's own directory.

    COCO: {"images": [{"id", "file_name"}], "annotations": [{"image_id", "caption"}]}
    JSONL: one {"image": PATH, "caption": TEXT} per line (a line per caption).
    """
    root = images_dir or path.parent
    text = path.read_text(encoding="utf-8")
    grouped: dict[Path, list[str]] = defaultdict(list)
    if path.suffix == ".jsonl":
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                grouped[root / row["image"]].append(row["caption"].strip())
            except (json.JSONDecodeError, KeyError, AttributeError) as error:
                raise InvalidConfig(f'{path}:{number}: expected {{"image": ..., "caption": ...}} ({error}).') from error
    else:
        try:
            data = json.loads(text)
            files = {image["id"]: image["file_name"] for image in data["images"]}
            for annotation in data["annotations"]:
                grouped[root / files[annotation["image_id"]]].append(annotation["caption"].strip())
        except (json.JSONDecodeError, KeyError, TypeError) as error:
            raise InvalidConfig(f"{path} is not a COCO captions file with images and annotations ({error}).") from error
    if not grouped:
        raise InvalidConfig(f"{path} holds no captions.")
    return [CaptionedImage(image, tuple(captions)) for image, captions in grouped.items()]
