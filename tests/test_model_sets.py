"""Model choices are data: references parse in one place, and unknown names list the valid ones."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from clipchat.errors import InvalidConfig, ModelNotFound
from vision import builtin_model_sets, load_model_set
from vision.catalog.model_sets import CaptionerChoice, Ref
from vision.catalog.settings import VisionSettings


def test_references_parse_in_one_place(tmp_path: Path) -> None:
    assert Ref.parse("hf-hub:openai-community/gpt2") == Ref("hf-hub", "openai-community/gpt2")
    assert Ref.parse("local-dir:models/gpt2", base=tmp_path) == Ref("local-dir", str(tmp_path / "models/gpt2"))
    assert Ref.parse("local-dir:/abs/gpt2", base=tmp_path) == Ref("local-dir", "/abs/gpt2")
    assert Ref.parse("gpt2") == Ref("name", "gpt2")
    assert Ref.parse("hf-hub:org/repo/weights/coco.pt").hub_file() == ("org/repo", "weights/coco.pt")
    with pytest.raises(InvalidConfig, match="names a repository, not a file"):
        Ref.parse("hf-hub:org/repo").hub_file()


def test_captioner_choices() -> None:
    assert CaptionerChoice.parse("guided").kind == "guided"
    clipcap = CaptionerChoice.parse("clipcap:hf-hub:org/repo/coco_weights.pt")
    assert (clipcap.kind, clipcap.location) == ("clipcap", Ref("hf-hub", "org/repo/coco_weights.pt"))
    assert CaptionerChoice.parse("clipcap:/data/coco_weights.pt").location == Ref("local-dir", "/data/coco_weights.pt")
    assert CaptionerChoice.parse("local-dir:/models/mine").kind == "prefix"
    with pytest.raises(InvalidConfig, match="not a reference"):
        CaptionerChoice.parse("my-captioner")


def test_a_captioners_checkpoint_is_its_location_and_guided_decoding_has_none() -> None:
    assert CaptionerChoice.parse("local-dir:/models/mine").checkpoint == Ref("local-dir", "/models/mine")
    assert CaptionerChoice.parse("clipcap:/data/coco.pt").checkpoint == Ref("local-dir", "/data/coco.pt")
    with pytest.raises(InvalidConfig, match="guided has no checkpoint"):
        _ = CaptionerChoice.parse("guided").checkpoint


def test_builtin_sets_load_and_unknown_names_list_them() -> None:
    names = builtin_model_sets()
    assert {"guided", "clipcap-coco", "clipcap-conceptual"} <= set(names)
    default = load_model_set("default")
    # The default captions with ClipCap's COCO checkpoint, on the CLIP it was trained with, not guided stock GPT-2.
    assert default.name == "clipcap-coco" and default.captioner.kind == "clipcap"
    assert default.captioner.location.scheme == "hf-hub" and "COCO" in default.captioner.location.target
    assert (default.clip, default.clip_pretrained) == ("ViT-B-32-quickgelu", "openai")
    assert default.answer_model == Ref("hf-hub", "openai-community/gpt2")  # open questions: stock GPT-2
    guided = load_model_set("guided")
    assert (guided.clip, guided.clip_pretrained, guided.captioner.kind) == ("ViT-B-32-quickgelu", "openai", "guided")
    with pytest.raises(ModelNotFound) as caught:
        load_model_set("vit-huge-dreams")
    assert all(name in caught.value.user_message for name in names)


def test_a_directory_is_a_model_set_with_paths_relative_to_it(tmp_path: Path) -> None:
    (tmp_path / "clipchat.json").write_text(
        json.dumps(
            {
                "clip": "local-dir:clip",
                "language_model": "local-dir:lm",
                "captioner": "local-dir:cap",
                "vocabulary": "tags.txt",
            }
        )
    )
    model_set = load_model_set(str(tmp_path))
    assert model_set.clip == f"local-dir:{tmp_path.resolve() / 'clip'}"
    assert model_set.language_model == Ref("local-dir", str(tmp_path.resolve() / "lm"))
    assert model_set.captioner.location == Ref("local-dir", str(tmp_path.resolve() / "cap"))
    assert model_set.vocabulary == str(tmp_path.resolve() / "tags.txt")
    with pytest.raises(ModelNotFound, match="No model set called"):
        load_model_set(str(tmp_path / "lm"))  # no such directory: answered as an unknown name


def test_settings_from_the_environment_override_the_set(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv("CLIPCHAT_MODELS", "clipcap-coco")
    monkeypatch.setenv("CLIPCHAT_CAPTIONER", "guided")
    monkeypatch.setenv("CLIPCHAT_LANGUAGE_MODEL", "hf-hub:openai-community/gpt2-medium")
    monkeypatch.chdir(tmp_path)  # no stray .env
    model_set = VisionSettings().model_set()
    assert model_set.captioner.kind == "guided"
    assert str(model_set.language_model) == "hf-hub:openai-community/gpt2-medium"
    assert model_set.clip == "ViT-B-32-quickgelu"
    monkeypatch.setenv("CLIPCHAT_MODELS", str(tmp_path / "empty"))
    with pytest.raises(ModelNotFound, match=r"has no clipchat\.json"):
        VisionSettings().model_set()


def test_a_typo_in_a_manifest_is_named(tmp_path: Path) -> None:
    (tmp_path / "clipchat.json").write_text(
        json.dumps({"clip": "ViT-B-32", "language_model": "gpt2", "captioner": "guided", "vocabluary": "mine.txt"})
    )
    with pytest.raises(InvalidConfig, match="unknown keys vocabluary"):
        load_model_set(str(tmp_path))
