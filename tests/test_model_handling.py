"""Model choices never degrade silently: overrides keep their weights, random weights and misfits are refused
in one line that names the fix, and `clipchat doctor` / `clipchat models` say what is on disk."""

from __future__ import annotations

import json
import os
from pathlib import Path

import open_clip
import pytest
import torch
from PIL import Image

from clipchat.errors import ClipchatError, InvalidConfig, ModelNotFound
from vision.model_sets import ModelSet, builtin_model_sets, load_model_set
from vision.settings import VisionSettings

CPU = torch.device("cpu")
NO_WEIGHTS_CLIP = "ViT-S-32-alt"  # open_clip's smallest built-in config (256-wide), with no published weights


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key in list(os.environ):
        if key.startswith(("CLIPCHAT_", "TELEGRAM_")):
            monkeypatch.delenv(key)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)  # no stray .env


def tagged_builtin_set() -> ModelSet:
    """A built-in set on an open_clip built-in CLIP with a pretrained tag (names change; read them)."""
    for name in builtin_model_sets():
        model_set = load_model_set(name)
        if model_set.clip_pretrained and model_set.clip in open_clip.list_models():
            return model_set
    raise AssertionError("no built-in set uses an open_clip name with a pretrained tag")


def one_line(error: BaseException) -> str:
    text = error.detail if isinstance(error, ClipchatError) else str(error)
    assert "\n" not in text and len(text) < 400, text
    return text


# --- 1. overrides keep real weights; random weights only on request --------------------------------------------


def test_overriding_the_clip_keeps_the_sets_weights_or_asks_for_a_tag(monkeypatch: pytest.MonkeyPatch) -> None:
    model_set = tagged_builtin_set()
    other = next(name for name in open_clip.list_models() if name != model_set.clip
                 and model_set.clip_pretrained in open_clip.list_pretrained_tags_by_model(name))
    monkeypatch.setenv("CLIPCHAT_MODELS", model_set.name)
    monkeypatch.setenv("CLIPCHAT_CLIP_MODEL", other)
    assert VisionSettings().model_set().clip_pretrained == model_set.clip_pretrained  # was None: random weights
    monkeypatch.setenv("CLIPCHAT_CLIP_PRETRAINED", "laion400m_e31")
    assert VisionSettings().model_set().clip_pretrained == "laion400m_e31"  # an explicit tag wins

    lacking = next(name for name in open_clip.list_models() if open_clip.list_pretrained_tags_by_model(name)
                   and model_set.clip_pretrained not in open_clip.list_pretrained_tags_by_model(name))
    with pytest.raises(InvalidConfig) as caught:
        model_set.with_overrides(clip=lacking)
    message = one_line(caught.value)
    assert "CLIPCHAT_CLIP_PRETRAINED" in message
    assert all(tag in message for tag in open_clip.list_pretrained_tags_by_model(lacking))


def test_a_clip_without_weights_is_refused_unless_random_weights_are_allowed() -> None:
    from vision.encoder import load_clip

    with pytest.raises(InvalidConfig) as caught:
        load_clip(NO_WEIGHTS_CLIP, None, CPU, torch.float32)
    assert "CLIPCHAT_ALLOW_RANDOM_WEIGHTS=true" in one_line(caught.value)
    with pytest.raises(InvalidConfig, match="one of openai"):  # a tag this CLIP lacks, not a download error
        load_clip("ViT-L-14-336", "laion2b_s32b_b82k", CPU, torch.float32)
    encoder = load_clip(NO_WEIGHTS_CLIP, None, CPU, torch.float32, allow_random_weights=True)
    assert encoder.dim == open_clip.get_model_config(NO_WEIGHTS_CLIP)["embed_dim"]


def test_describe_with_a_clip_that_has_no_weights_exits_with_one_line(monkeypatch, capsys, tmp_path: Path) -> None:
    from bot.ops.cli import main

    (tmp_path / "lm").mkdir()  # everything else local: nothing to download, so the CLIP is the only problem
    (tmp_path / "clipchat.json").write_text(json.dumps({
        "clip": "local-dir:clip", "language_model": "local-dir:lm", "captioner": "guided"}))
    Image.new("RGB", (32, 32), "red").save(tmp_path / "red.png")
    monkeypatch.setenv("CLIPCHAT_MODELS", str(tmp_path))
    monkeypatch.setenv("CLIPCHAT_CLIP_MODEL", NO_WEIGHTS_CLIP)
    assert main(["describe", str(tmp_path / "red.png")]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "CLIPCHAT_ALLOW_RANDOM_WEIGHTS" in error, error


# --- 3. names from elsewhere get the open_clip name that works ------------------------------------------------


@pytest.mark.parametrize(("name", "suggestion"), [
    ("ViT-L/14", "ViT-L-14"),
    ("vit-b/32", "ViT-B-32"),
    ("openai/clip-vit-large-patch14", "CLIPCHAT_CLIP_MODEL=ViT-L-14-quickgelu with CLIPCHAT_CLIP_PRETRAINED=openai"),
    ("hf-hub:openai/clip-vit-base-patch32", "CLIPCHAT_CLIP_MODEL=ViT-B-32-quickgelu"),
])
def test_unknown_clip_names_get_a_short_suggestion(name: str, suggestion: str) -> None:
    from vision.encoder import load_clip

    with pytest.raises(ModelNotFound) as caught:
        load_clip(name, "openai", CPU, torch.float32)
    message = one_line(caught.value)
    assert suggestion in message and len(message) < 250, message  # not open_clip's 2.7 kB list of names
