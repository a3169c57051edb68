"""Build the synthetic world into a directory: data, a tiny CLIP, a tiny GPT-2, a trained captioner, a
tiny Llama-style chat model that answers open questions, and a tiny vision-language model that sees the photo.

    python -m tests.world build DIR
    clipchat describe --models DIR DIR/data/heldout/0000.png
    clipchat describe --models DIR/guided DIR/data/heldout/0000.png
    clipchat chat --models DIR/seeing     # /photo DIR/data/placed/00000.png, then "where is it?"

The captioner is trained by `clipchat train-captioner` itself, exactly as an
operator would train one.
"""

from __future__ import annotations

import fcntl
import json
import multiprocessing
import random
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch

from vision.models.tagger import DEFAULT_TEMPLATES

from .chat_training import train_chat_model
from .clip_training import VALUES, tag_label, train_clip
from .language_training import train_language_model
from .placed import heldout_photos, write_placed_split
from .scenes import ATTRIBUTES, Scene, all_scenes, compositional_split, render
from .vlm_training import train_vlm

TRAIN_RENDERS_PER_SCENE = 12
# CLIP learns single labels from these; the tagger asks with its own templates (vision.models.tagger.DEFAULT_TEMPLATES),
# which CLIP never sees, so tag accuracy is not a recital of training texts.
CLIP_TRAINING_TEMPLATES = (
    "a rendering of a {}.",
    "a {} is shown.",
    "look, a {}.",
    "a simple drawing of a {}.",
    "there is a {} here.",
    "a {}.",
    "an illustration of a {}.",
    "this shows a {}.",
)
COMPLETE = ".complete"
# Everything but the VLM: the tests that need no seeing model start on it while the VLM, the longest stage,
# still trains (it ended alone on one core for the last third of a build, the other core idle)
BASE_COMPLETE = ".base-complete"
BUILDING = ".building"  # a lock: one build at a time per folder


def write_split(directory: Path, scenes: list[Scene], seed: int, seen: list[Scene] | None = None) -> Path:
    """Render `scenes` as PNGs and write `captions.jsonl` beside them (with `seen`: whether training saw each
    photo's combination of attributes)."""
    rng = random.Random(seed)
    directory.mkdir(parents=True, exist_ok=True)
    lines = []
    for index, scene in enumerate(scenes):
        name = f"{index:05d}.png"
        render(scene, rng).save(directory / name)
        extra = {"seen": scene in seen} if seen is not None else {}
        lines.append(json.dumps({"image": name, "caption": scene.caption, **scene.attributes(), **extra}))
    (directory / "captions.jsonl").write_text("\n".join(lines) + "\n")
    return directory / "captions.jsonl"


def write_vocabulary(path: Path) -> None:
    """One section per attribute: each photo has exactly one value of each."""
    lines = []
    for attribute in ATTRIBUTES:
        lines.append(f"[{attribute}]")
        lines.extend(tag_label(attribute, value) for value in VALUES[attribute])
    path.write_text("\n".join(lines) + "\n")


def write_manifest(
    directory: Path,
    captioner: str,
    clip: str = "local-dir:clip",
    language_model: str = "local-dir:gpt2",
    vocabulary: str = "vocab.txt",
    answer_model: str | None = None,
) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    extra = {"answer_model": answer_model} if answer_model else {}
    (directory / "clipchat.json").write_text(
        json.dumps(
            {
                "description": "The synthetic test world: shapes of several colours and sizes on several backgrounds.",
                "clip": clip,
                "language_model": language_model,
                "captioner": captioner,
                "vocabulary": vocabulary,
                **extra,
            },
            indent=2,
        )
    )


def _on_one_thread(train, *args):
    """(what `train` returns, the CPU seconds it took): the build's log says what each stage costs, since the
    suite's time on 2 cores is bound by the CPU time of the build and the tests together."""
    torch.set_num_threads(1)
    started = time.process_time()
    return train(*args), time.process_time() - started


def _vision_models(directory: Path, seen: list[Scene]) -> Path:
    """The photos, CLIP and GPT-2; returns the training captions file."""
    scenes = all_scenes()
    train = write_split(directory / "data" / "train", [s for s in seen for _ in range(TRAIN_RENDERS_PER_SCENE)], seed=1)
    # Every combination, rendered anew: seen ones test robustness to noise, unseen ones composition.
    write_split(directory / "data" / "heldout", random.Random(2).sample(scenes, len(scenes)), seed=2, seen=seen)
    write_vocabulary(directory / "vocab.txt")
    train_clip(directory / "clip", list(CLIP_TRAINING_TEMPLATES), seen)
    train_language_model(directory / "gpt2", [s.caption for s in seen])
    return train


def _seeing_model(directory: Path, seen: list[Scene]) -> None:
    """The placed photos held out (position and word), and the VLM trained on photos of the seen scenes."""
    write_placed_split(directory / "data" / "placed", heldout_photos(seen, seed=4), seed=4)
    train_vlm(directory / "vlm", seen, log=lambda line: None)


def build_world(directory: Path, *, log=print) -> Path:
    """Build everything into `directory` (skipped when a finished build is already there).

    Two test sessions given the same CLIPCHAT_TEST_WORLD would otherwise train into one folder at once,
    twice the CPU, each overwriting the other's files: the second waits for the first and uses its world."""
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / BUILDING, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (directory / COMPLETE).is_file():
            return directory
        return _build(directory, log)


def _build(directory: Path, log) -> Path:
    started = time.monotonic()
    (directory / BASE_COMPLETE).unlink(missing_ok=True)  # a killed build's: these files are rewritten now
    seen, _ = compositional_split()  # the unseen fifth reaches no training step below
    assert not set(CLIP_TRAINING_TEMPLATES) & set(DEFAULT_TEMPLATES)
    # The chat model needs nothing else the world makes, so it trains beside the rest, each on one core:
    # models this small keep one core busy with small operations, and a second thread on the same
    # operations gains less than a second process running other ones.
    # The VLM needs nothing else either and trains longest: a third process from the start, so that no core waits
    # idle while it ends alone (one free core at a time: 692 s for the whole build, where three at once share both).
    pool = ProcessPoolExecutor(3, mp_context=multiprocessing.get_context("spawn"))
    with pool:
        chat = pool.submit(_on_one_thread, train_chat_model, directory / "chat", seen)
        vision = pool.submit(_on_one_thread, _vision_models, directory, seen)
        seeing = pool.submit(_on_one_thread, _seeing_model, directory, seen)
        train, cpu = vision.result()
        log(f"world: data written, CLIP and GPT-2 trained ({time.monotonic() - started:.0f}s, {cpu:.0f} CPU-s)")
        _, cpu = chat.result()
        log(f"world: chat answer model trained ({time.monotonic() - started:.0f}s, {cpu:.0f} CPU-s)")
        cpu = time.process_time()
        _train_captioner(directory, train)
        cpu = time.process_time() - cpu
        log(f"world: captioner trained ({time.monotonic() - started:.0f}s, {cpu:.0f} CPU-s)")
        write_manifest(directory, "local-dir:captioner", answer_model="local-dir:chat")
        (directory / BASE_COMPLETE).write_text(f"{time.monotonic() - started:.0f}s\n")
        _, cpu = seeing.result()
        log(f"world: vision-language model trained ({time.monotonic() - started:.0f}s, {cpu:.0f} CPU-s)")
    write_manifest(
        directory / "seeing",
        "local-dir:../captioner",
        clip="local-dir:../clip",
        language_model="local-dir:../gpt2",
        vocabulary="../vocab.txt",
        answer_model="local-dir:../vlm",
    )
    (directory / COMPLETE).write_text(f"{time.monotonic() - started:.0f}s\n")
    return directory


def _train_captioner(directory: Path, train: Path) -> None:
    from bot.ops.cli import main as clipchat

    # The guided set has no captioning checkpoint; it is also what train-captioner reads CLIP and GPT-2 from.
    write_manifest(
        directory / "guided",
        "guided",
        clip="local-dir:../clip",
        language_model="local-dir:../gpt2",
        vocabulary="../vocab.txt",
    )
    code = clipchat(
        [
            "train-captioner",
            str(train),
            "--out",
            str(directory / "captioner"),
            "--models",
            str(directory / "guided"),
            "--device",
            "cpu",
            "--finetune-gpt2",
            "--prefix-length",
            "4",
            "--epochs",
            "10",
            "--batch-size",
            "32",
            "--lr",
            "2e-3",
            "--validation-fraction",
            "0",
        ]
    )  # every image trains; test_training_report checks validation
    if code != 0:
        raise RuntimeError(f"train-captioner failed with exit code {code}")
