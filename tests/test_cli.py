"""The `clipchat` command, driven as a user would drive it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest


def clipchat(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    executable = shutil.which("clipchat")
    command = [executable] if executable else [sys.executable, "-m", "bot.ops.cli"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}  # nothing here may reach for the network
    return subprocess.run([*command, *args], capture_output=True, text=True, timeout=300, cwd=cwd, env=env)


@pytest.mark.parametrize("command", ["run", "chat", "describe", "train-captioner", "evaluate", "prefetch"])
def test_every_command_explains_itself(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    """The parser `clipchat` runs, in this process: each command's own start-up is tested by the others here
    (`run` and `chat` in test_bot_cli.py)."""
    from bot.ops.cli import build_parser

    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args([command, "--help"])
    assert exit_.value.code == 0 and "--models" in capsys.readouterr().out


def test_describe_prints_caption_and_tags(world_dir: Path, heldout) -> None:
    first, second = heldout[0], heldout[1]
    result = clipchat("describe", "--models", str(world_dir), str(first.path), str(second.path))
    assert result.returncode == 0, result.stderr
    assert f"{first.path}: {first.scene.caption}" in result.stdout
    assert f"{second.path}: {second.scene.caption}" in result.stdout
    assert result.stdout.count("  tags: ") == 2


def test_describe_json_and_a_bad_file_among_good_ones(world_dir: Path, heldout, tmp_path: Path) -> None:
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    result = clipchat("describe", "--models", str(world_dir / "guided"), "--json", str(broken), str(heldout[2].path))
    assert result.returncode == 1  # something failed, and the user is told what
    assert f"{broken}: " in result.stderr and "damaged" in result.stderr and "Traceback" not in result.stderr
    [line] = result.stdout.splitlines()
    described = json.loads(line)
    assert described["photo"] == str(heldout[2].path) and heldout[2].scene.colour in described["caption"]
    assert {"label", "score"} <= set(described["tags"][0])


def test_evaluate_scores_the_world_captioner(world_dir: Path, figure) -> None:
    result = clipchat(
        "evaluate",
        "--models",
        str(world_dir),
        "--json",
        "--limit",
        "120",
        str(world_dir / "data" / "heldout" / "captions.jsonl"),
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    figure("evaluate on 120 held-out: BLEU-4", report["bleu4"])
    figure("evaluate on 120 held-out: CIDEr", report["cider"])
    figure("evaluate on 120 held-out: CLIPScore", report["clip_score"])
    assert report["images"] == 120 and report["skipped"] == 0
    assert report["bleu4"] >= 0.85 and report["cider"] > 1.0 and report["clip_score"] > 0.3


def test_prefetch_readies_a_model_set(world_dir: Path, tmp_path: Path) -> None:
    result = clipchat("prefetch", "--models", str(world_dir), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "can now start offline" in result.stdout


def test_unknown_model_set_lists_the_valid_ones(heldout) -> None:
    result = clipchat("describe", "--models", "no-such-models", str(heldout[0].path))
    assert result.returncode == 2
    assert "default" in result.stderr and "clipcap-coco" in result.stderr and "Traceback" not in result.stderr


def test_db_upgrade_creates_the_schema(tmp_path: Path) -> None:
    import sqlite3

    database = tmp_path / "clipchat.db"
    result = clipchat("db", "upgrade", "--url", f"sqlite:///{database}")
    assert result.returncode == 0, result.stderr
    tables = {row[0] for row in sqlite3.connect(database).execute("select name from sqlite_master where type='table'")}
    assert {"users", "chats", "images", "turns", "chat_settings", "alembic_version"} <= tables
    again = clipchat("db", "upgrade", "--url", f"sqlite:///{database}")  # idempotent
    assert again.returncode == 0, again.stderr


@pytest.mark.parametrize(("command", "package"), [("train-captioner", "matplotlib"), ("evaluate", "pycocoevalcap")])
def test_training_commands_say_how_to_install_their_extra(
    command: str, package: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The bot's install leaves training out; its commands then say what to install, before loading anything."""
    import importlib.util

    from bot.ops.cli import main

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == package else real(name, *a))
    captions = tmp_path / "captions.jsonl"
    captions.write_text('{"image": "a.jpg", "caption": "a cat."}\n')
    extra = ["--out", str(tmp_path / "out")] if command == "train-captioner" else []
    assert main([command, str(captions), *extra, "--models", str(tmp_path / "no-such-set")]) == 2
    err = capsys.readouterr().err
    assert "pip install 'clipchat[train]'" in err and package in err
