"""Model choices never degrade silently: overrides keep their weights, random weights and misfits are refused
in one line that names the fix, and `clipchat doctor` / `clipchat models` say what is on disk."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import open_clip
import pytest
import torch
from PIL import Image

from clipchat.errors import ClipchatError, InvalidConfig, ModelNotFound
from tests.conftest import BOT_TOKEN
from vision.catalog.model_sets import ModelSet, builtin_model_sets, load_model_set
from vision.catalog.settings import VisionSettings

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
    other = next(
        name
        for name in open_clip.list_models()
        if name != model_set.clip and model_set.clip_pretrained in open_clip.list_pretrained_tags_by_model(name)
    )
    monkeypatch.setenv("CLIPCHAT_MODELS", model_set.name)
    monkeypatch.setenv("CLIPCHAT_CLIP_MODEL", other)
    assert VisionSettings().model_set().clip_pretrained == model_set.clip_pretrained  # was None: random weights
    monkeypatch.setenv("CLIPCHAT_CLIP_PRETRAINED", "laion400m_e31")
    assert VisionSettings().model_set().clip_pretrained == "laion400m_e31"  # an explicit tag wins

    lacking = next(
        name
        for name in open_clip.list_models()
        if open_clip.list_pretrained_tags_by_model(name)
        and model_set.clip_pretrained not in open_clip.list_pretrained_tags_by_model(name)
    )
    with pytest.raises(InvalidConfig) as caught:
        model_set.with_overrides(clip=lacking)
    message = one_line(caught.value)
    assert "CLIPCHAT_CLIP_PRETRAINED" in message
    assert all(tag in message for tag in open_clip.list_pretrained_tags_by_model(lacking))


def test_a_clip_without_weights_is_refused_unless_random_weights_are_allowed() -> None:
    from vision.models.encoder import load_clip

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
    (tmp_path / "clipchat.json").write_text(
        json.dumps({"clip": "local-dir:clip", "language_model": "local-dir:lm", "captioner": "guided"})
    )
    Image.new("RGB", (32, 32), "red").save(tmp_path / "red.png")
    monkeypatch.setenv("CLIPCHAT_MODELS", str(tmp_path))
    monkeypatch.setenv("CLIPCHAT_CLIP_MODEL", NO_WEIGHTS_CLIP)
    assert main(["describe", str(tmp_path / "red.png")]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "CLIPCHAT_ALLOW_RANDOM_WEIGHTS" in error, error


# --- 3. names from elsewhere get the open_clip name that works ------------------------------------------------


@pytest.mark.parametrize(
    ("name", "suggestion"),
    [
        ("ViT-L/14", "ViT-L-14"),
        ("vit-b/32", "ViT-B-32"),
        (
            "openai/clip-vit-large-patch14",
            "CLIPCHAT_CLIP_MODEL=ViT-L-14-quickgelu with CLIPCHAT_CLIP_PRETRAINED=openai",
        ),
        ("hf-hub:openai/clip-vit-base-patch32", "CLIPCHAT_CLIP_MODEL=ViT-B-32-quickgelu"),
    ],
)
def test_unknown_clip_names_get_a_short_suggestion(name: str, suggestion: str) -> None:
    from vision.models.encoder import load_clip

    with pytest.raises(ModelNotFound) as caught:
        load_clip(name, "openai", CPU, torch.float32)
    message = one_line(caught.value)
    assert suggestion in message and len(message) < 250, message  # not open_clip's 2.7 kB list of names


# --- 2. a captioner refuses a CLIP of another width at load time ----------------------------------------------


def other_width_clip(world_dir: Path, folder: Path) -> int:
    """The world's CLIP design, twice as wide an embedding, saved as a local open_clip directory; its width."""
    from safetensors.torch import save_file

    config = json.loads((world_dir / "clip" / "open_clip_config.json").read_text())
    config["model_cfg"]["embed_dim"] *= 2
    folder.mkdir()
    (folder / "open_clip_config.json").write_text(json.dumps(config))
    model = open_clip.CLIP(**config["model_cfg"])
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "open_clip_model.safetensors"))
    return config["model_cfg"]["embed_dim"]


def test_a_prefix_captioner_refuses_a_clip_of_another_width(world_dir: Path, tmp_path: Path) -> None:
    from vision.pipeline import load_models

    manifest = json.loads((world_dir / "captioner" / "captioner.json").read_text())
    expected = manifest["mapper"]["clip_dim"]
    other = other_width_clip(world_dir, tmp_path / "wide-clip")
    model_set = load_model_set(str(world_dir)).with_overrides(clip=f"local-dir:{tmp_path / 'wide-clip'}")
    with pytest.raises(InvalidConfig) as caught:  # before: loaded, then a matrix-shape error at the first photo
        load_models(model_set, device="cpu", cache_dir=tmp_path)
    message = one_line(caught.value)
    assert f"expects {expected}-wide" in message and f"gives {other}-wide" in message
    assert manifest["trained_with_clip"] in message  # the CLIP it fits, as training recorded it


def test_a_clipcap_checkpoint_refuses_a_clip_of_another_width(world_dir: Path, tmp_path: Path) -> None:
    from vision.models.mapper import MapperConfig, build_mapper
    from vision.pipeline import load_models

    lm_width = json.loads((world_dir / "gpt2" / "config.json").read_text())["n_embd"]
    mapper = build_mapper(MapperConfig(clip_dim=512, lm_dim=lm_width, prefix_length=2))  # ClipCap's published width
    torch.save({f"clip_project.{k}": v for k, v in mapper.state_dict().items()}, tmp_path / "coco_weights.pt")
    (tmp_path / "clipchat.json").write_text(
        json.dumps(
            {
                "clip": f"local-dir:{world_dir / 'clip'}",
                "language_model": f"local-dir:{world_dir / 'gpt2'}",
                "captioner": "clipcap:coco_weights.pt",
                "vocabulary": str(world_dir / "vocab.txt"),
            }
        )
    )
    with pytest.raises(InvalidConfig) as caught:
        load_models(str(tmp_path), device="cpu", cache_dir=tmp_path / "cache")
    message = one_line(caught.value)
    assert "expects 512-wide" in message and "ViT-B/32" in message and "ViT-B-32-quickgelu" in message


# --- 4. doctor checks every model, and Telegram when asked ----------------------------------------------------


def cache_file(cache: Path, repo_id: str, filename: str, data: bytes) -> None:
    """Put a file into a Hugging Face cache as hf_hub_download leaves it: a blob, and a snapshot link to it."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    commit = "0" * 40
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
    blob.parent.mkdir(parents=True, exist_ok=True)
    blob.write_bytes(data)
    link = repo / "snapshots" / commit / filename
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(os.path.relpath(blob, link.parent))


def cache_clip_weights(cache: Path, model_set: ModelSet, size: int) -> None:
    """Where open_clip's hub download puts this CLIP's weights (ORG/REPO/ or ORG/REPO/FILE; safetensors first)."""
    repo_id, filename = os.path.split(open_clip.get_pretrained_cfg(model_set.clip, model_set.clip_pretrained)["hf_hub"])
    cache_file(cache, repo_id, filename or "open_clip_model.safetensors", b"\0" * size)


def by_name(checks) -> dict:
    return {check.name: check for check in checks}


def test_doctor_checks_the_clip_in_the_hub_cache(tmp_path: Path) -> None:
    from bot.ops.doctor import FAIL, OK, WARN, check_models

    model_set = tagged_builtin_set()
    settings = VisionSettings(models=model_set.name, hub_cache_dir=tmp_path / "hub")
    checks = by_name(check_models(settings))
    assert checks["clip"].status == WARN and "not downloaded" in checks["clip"].detail
    assert "prefetch" in checks["models"].fix
    cache_clip_weights(tmp_path / "hub", model_set, 2_000_000)
    checks = by_name(check_models(settings))
    assert checks["clip"].status == OK and "2.0 MB" in checks["clip"].detail
    assert checks["models"].status == WARN  # its other models are still to download

    broken = by_name(check_models(settings.model_copy(update={"clip_model": "openai/clip-vit-base-patch32"})))
    assert broken["clip"].status == FAIL and "ViT-B-32-quickgelu" in broken["clip"].detail
    assert broken["models"].status == FAIL


def test_doctor_checks_every_local_model_and_the_answer_model(tmp_path: Path) -> None:
    from bot.ops.doctor import FAIL, OK, check_models

    (tmp_path / "clip").mkdir()
    (tmp_path / "clip" / "open_clip_config.json").write_text("{}")
    (tmp_path / "clip" / "open_clip_model.safetensors").write_bytes(b"\0" * 3000)
    (tmp_path / "lm").mkdir()
    (tmp_path / "coco.pt").write_bytes(b"\0" * 5000)
    (tmp_path / "clipchat.json").write_text(
        json.dumps(
            {
                "clip": "local-dir:clip",
                "language_model": "local-dir:lm",
                "captioner": "clipcap:coco.pt",
                "answer_model": "local-dir:answers",
            }
        )
    )
    checks = by_name(check_models(VisionSettings(models=str(tmp_path))))
    assert [checks[name].status for name in ("clip", "language model", "captioner")] == [OK, OK, OK]
    assert "3.0 kB" in checks["clip"].detail and "5.0 kB" in checks["captioner"].detail
    assert checks["answer model"].status == FAIL and "answers does not exist" in checks["answer model"].detail
    assert checks["models"].status == FAIL


async def test_doctor_online_asks_telegram_whose_token_it_is(telegram, monkeypatch, capsys, tmp_path: Path) -> None:
    import asyncio

    from bot.core.settings import BotSettings
    from bot.ops.cli import main
    from bot.ops.doctor import FAIL, check_telegram

    for key, value in {
        "TELEGRAM_BOT_TOKEN": BOT_TOKEN,
        "CLIPCHAT_BASE_URL": telegram.base_url,
        "CLIPCHAT_STATE_DIR": str(tmp_path),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'bot.db'}",
        "CLIPCHAT_HUB_CACHE_DIR": str(tmp_path / "hub"),
    }.items():
        monkeypatch.setenv(key, value)
    await asyncio.to_thread(main, ["doctor", "--online"])  # its own event loop; the fake server runs on this one
    output = capsys.readouterr().out
    assert "✓ telegram:" in output and "@clipchat_test_bot" in output, output
    assert [call.method for call in telegram.calls] == ["getMe"]

    other_token = BOT_TOKEN[:-1] + ("x" if BOT_TOKEN[-1] != "x" else "y")  # well-formed, unknown to the server
    refused = await check_telegram(BotSettings(token=other_token, base_url=telegram.base_url))
    assert refused.status == FAIL and "refused the token" in refused.detail and "@BotFather" in refused.fix
    assert other_token.split(":")[1] not in refused.detail + refused.fix
    telegram.latency["getMe"] = 2
    slow = await asyncio.wait_for(
        check_telegram(BotSettings(token=BOT_TOKEN, base_url=telegram.base_url), timeout_s=0.3), 1.5
    )
    assert slow.status == FAIL and "no answer within 0.3 s" in slow.detail


# --- 5. clipchat models ---------------------------------------------------------------------------------------


def test_clipchat_models_lists_the_sets_and_what_is_on_disk(monkeypatch, capsys, tmp_path: Path) -> None:
    from bot.ops.cli import main

    model_set = tagged_builtin_set()
    cache_clip_weights(tmp_path / "hub", model_set, 1_500_000)
    monkeypatch.setenv("CLIPCHAT_HUB_CACHE_DIR", str(tmp_path / "hub"))
    monkeypatch.setenv("CLIPCHAT_MODELS", model_set.name)
    assert main(["models"]) == 0
    lines = capsys.readouterr().out.splitlines()
    for name in builtin_model_sets():
        description = load_model_set(name).description
        marker = "*" if name == model_set.name else " "
        assert f"{marker} {name}: {description}" in lines
    configured = lines.index(f"* {model_set.name}: {model_set.description}")
    clip_row = next(line for line in lines[configured:] if line.split()[:1] == ["clip"])
    assert f"{model_set.clip} ({model_set.clip_pretrained})" in clip_row and "on disk, 1.5 MB" in clip_row
    language_row = next(line for line in lines[configured:] if line.strip().startswith("language model"))
    assert "not downloaded" in language_row


def test_a_language_model_copied_without_its_tokenizer_is_not_on_disk(tmp_path: Path) -> None:
    """doctor and `clipchat models` agree with the start-up check: a snapshot is not a language model until its
    config, weights and tokenizer are all there."""
    from vision.catalog.hub import NOT_DOWNLOADED, ON_DISK, presence

    model_set = load_model_set("guided")
    repo = model_set.language_model.target
    cache = tmp_path / "hub"
    cache_file(cache, repo, "config.json", b"{}")
    cache_file(cache, repo, "model.safetensors", b"\0" * 1000)

    def language_model() -> object:
        return next(p for p in presence(model_set, cache) if p.role == "language model")

    assert language_model().state == NOT_DOWNLOADED and "tokenizer.json" in language_model().detail
    cache_file(cache, repo, "tokenizer.json", b"{}")
    assert language_model().state == ON_DISK
