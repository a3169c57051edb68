"""Offline machines (issue 14): `.env`'s Hugging Face settings, failing in seconds with one line that says what
to copy where, `clipchat run` without Telegram, what prefetch says, and `clipchat --version`.

Nothing here reaches a network: the hub's address is a local port nobody listens on.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path

import pytest
from PIL import Image

from bot.ops.cli import main

TOKEN = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"
# The `clipchat` entry point's own function, timed inside the process: on a busy machine importing torch
# alone can take seconds, and that is not what these tests measure.
TIMED_MAIN = (
    "import sys, time; from bot.ops.cli import main; start = time.monotonic(); code = main(sys.argv[1:]); "
    "print(f'{time.monotonic() - start:.2f}'); sys.exit(code)"
)


@pytest.fixture
def closed_port():
    """A local port that refuses connections: bound, never listening."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    path = tmp_path / "photo.png"
    Image.new("RGB", (64, 48), "teal").save(path)
    return path


@pytest.fixture
def root_level():
    """`clipchat run` lowers the root logger to INFO, as a server should; put it back afterwards."""
    level = logging.getLogger().level
    yield
    logging.getLogger().setLevel(level)


def a_builtin_set() -> str:
    """The default set when it is a built-in one (built-in names change; every one of them is on the hub)."""
    from vision.catalog.model_sets import builtin_model_sets
    from vision.catalog.settings import VisionSettings

    names = builtin_model_sets()
    default = VisionSettings.model_fields["models"].default
    return default if default in names else names[0]


def clean_environment(**extra: str) -> dict[str, str]:
    """This process's environment without any hub, clipchat or Telegram setting, plus `extra`."""
    ours = ("HF_", "CLIPCHAT_", "TELEGRAM_", "TRANSFORMERS_", "HUGGING_FACE_", "DATABASE_URL")
    return {**{k: v for k, v in os.environ.items() if not k.startswith(ours)}, **extra}


def test_version_prints_the_installed_version(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit:
        main(["--version"])
    assert exit.value.code == 0
    assert capsys.readouterr().out.strip() == f"clipchat {version('clipchat')}"


def test_hub_settings_in_dotenv_go_to_the_environment_unless_already_set(tmp_path: Path) -> None:
    from bot.ops.cli import hub_settings_from_env_file

    env_file = tmp_path / ".env"
    env_file.write_text(
        "HF_HUB_OFFLINE=1\nHF_HOME=/from/dotenv\nHF_TOKEN=hf_secret\nTRANSFORMERS_OFFLINE=1\n"
        "CLIPCHAT_MODELS=mine\nTELEGRAM_BOT_TOKEN=123:abc\nHF_EMPTY\n"
    )
    environ = {"HF_HOME": "/from/the/environment"}
    taken = hub_settings_from_env_file(str(env_file), environ)
    assert environ == {
        "HF_HOME": "/from/the/environment",
        "HF_HUB_OFFLINE": "1",
        "HF_TOKEN": "hf_secret",
        "TRANSFORMERS_OFFLINE": "1",
    }  # clipchat's own settings stay with pydantic-settings
    assert sorted(taken) == ["HF_HUB_OFFLINE", "HF_TOKEN", "TRANSFORMERS_OFFLINE"]


def test_without_network_or_cache_describe_ends_in_seconds_naming_prefetch_and_the_folder(
    tmp_path: Path, photo: Path, closed_port: int
) -> None:
    # Where the hub is and where its cache lives come from .env only, so this also shows the hub library
    # reads .env's HF_ settings
    (tmp_path / ".env").write_text(f"HF_HOME={tmp_path / 'hf'}\nHF_ENDPOINT=http://127.0.0.1:{closed_port}\n")
    result = subprocess.run(
        [sys.executable, "-c", TIMED_MAIN, "describe", str(photo), "--models", a_builtin_set()],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env=clean_environment(),
    )
    assert result.returncode == 2, result.stderr
    [line] = result.stderr.splitlines()
    assert line.startswith("clipchat: ") and "clipchat prefetch" in line, line
    assert str(tmp_path / "hf" / "hub") in line and f"127.0.0.1:{closed_port}" in line, line
    assert float(result.stdout) < 5


@pytest.mark.parametrize(
    "command", ["describe", "evaluate", "prefetch", "train-captioner", "chat", "run", "vision-server"]
)
def test_every_model_command_fails_in_seconds_without_network_or_cache(
    command: str,
    tmp_path: Path,
    photo: Path,
    closed_port: int,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
    root_level,
) -> None:
    from huggingface_hub import constants

    hub = tmp_path / "hub"
    monkeypatch.chdir(tmp_path)
    for name in [name for name in os.environ if name.startswith("CLIPCHAT_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("CLIPCHAT_HUB_CACHE_DIR", str(hub))
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", TOKEN)
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'bot.db'}")
    # This process imported huggingface_hub long ago: set what it read from the environment then
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{closed_port}")
    captions = tmp_path / "captions.jsonl"
    captions.write_text(f'{{"image": "{photo.name}", "caption": "a teal square."}}\n')
    arguments = {
        "describe": [str(photo)],
        "evaluate": [str(captions)],
        "train-captioner": [str(captions), "--out", str(tmp_path / "out")],
    }.get(command, [])
    start = time.monotonic()
    code = main([command, *arguments, "--models", a_builtin_set()])
    elapsed = time.monotonic() - start
    error = capsys.readouterr().err
    assert code == 2 and elapsed < 5, (code, elapsed, error)
    [line] = error.splitlines()
    assert "clipchat prefetch" in line and str(hub) in line and "cannot be reached" in line, line


def test_offline_by_choice_fails_at_once_and_says_so(
    tmp_path: Path, photo: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    from huggingface_hub import constants

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CLIPCHAT_HUB_CACHE_DIR", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "ENDPOINT", "http://192.0.2.1")  # TEST-NET: asking it would hang, not fail
    start = time.monotonic()
    assert main(["describe", str(photo), "--models", a_builtin_set()]) == 2
    assert time.monotonic() - start < 5
    [line] = capsys.readouterr().err.splitlines()
    assert "HF_HUB_OFFLINE" in line and "clipchat prefetch" in line and str(tmp_path / "hub") in line, line


def fake_cached(cache: Path, repo: str, filename: str) -> None:
    """One file as huggingface_hub's cache lays it out (refs/main names the snapshot)."""
    folder = cache / f"models--{repo.replace('/', '--')}"
    (folder / "refs").mkdir(parents=True, exist_ok=True)
    (folder / "refs" / "main").write_text("0" * 40)
    path = folder / "snapshots" / ("0" * 40) / filename
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"weights")


def test_an_offline_machine_with_the_downloads_copied_over_passes_the_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from huggingface_hub import constants

    from clipchat.errors import ModelNotFound
    from vision.catalog.hub import LM_TOKENIZER, clip_hub_files, ensure_available, hub_files
    from vision.catalog.model_sets import builtin_model_sets, load_model_set

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    for name in builtin_model_sets():
        model_set = load_model_set(name)
        cache = tmp_path / name
        needed = hub_files(model_set) + clip_hub_files(model_set.clip, model_set.clip_pretrained)
        assert any(file.role == "CLIP" for file in needed), name  # every built-in set downloads its CLIP
        for file in needed:
            fake_cached(cache, file.repo, file.names[-1])  # any of a file's formats will do
        ensure_available(model_set, cache)
        lost = needed[-1]
        shutil.rmtree(cache / f"models--{lost.repo.replace('/', '--')}")
        with pytest.raises(ModelNotFound, match=re.escape(f"{lost.repo} ({lost.role})")):
            ensure_available(model_set, cache)
    # A config and weights are not a language model: a cache copied without the tokenizer fails here, in one
    # line, not in the loader's retries
    cache = tmp_path / "no-tokenizer"
    for file in hub_files(model_set) + clip_hub_files(model_set.clip, model_set.clip_pretrained):
        if file.names != LM_TOKENIZER:
            fake_cached(cache, file.repo, file.names[-1])
    with pytest.raises(ModelNotFound, match="language model"):
        ensure_available(model_set, cache)


def test_run_without_telegram_says_so_in_one_line(world_dir: Path, tmp_path: Path, closed_port: int) -> None:
    env = clean_environment(
        TELEGRAM_BOT_TOKEN=TOKEN,
        CLIPCHAT_MODELS=str(world_dir),
        HF_HUB_OFFLINE="1",
        CLIPCHAT_BASE_URL=f"http://127.0.0.1:{closed_port}/bot",
        DATABASE_URL=f"sqlite:///{tmp_path / 'bot.db'}",
    )
    executable = shutil.which("clipchat")
    command = [executable] if executable else [sys.executable, "-m", "bot.ops.cli"]
    result = subprocess.run([*command, "run"], capture_output=True, text=True, timeout=60, cwd=tmp_path, env=env)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and " ERROR " not in result.stderr, result.stderr
    [line] = [line for line in result.stderr.splitlines() if not line[:4].isdigit()]  # the rest are INFO logs
    assert line.startswith("clipchat: ") and f"127.0.0.1:{closed_port}" in line and "CLIPCHAT_BASE_URL" in line


def test_prefetch_names_the_folders_to_copy_to_an_offline_machine(
    world_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CLIPCHAT_HUB_CACHE_DIR", str(tmp_path / "hub"))
    monkeypatch.setenv("CLIPCHAT_CACHE_DIR", str(tmp_path / "own"))
    assert main(["prefetch", "--models", str(world_dir)]) == 0
    out = capsys.readouterr().out
    assert f"copy {tmp_path / 'hub'} " in out and f" {tmp_path / 'own'} " in out, out


async def test_run_with_a_revoked_token_says_so_in_one_line_without_the_token(
    world_dir: Path, tmp_path: Path, telegram
) -> None:
    """PTB's InvalidToken repeats the token in its message; as a traceback it would reach the container log."""
    import asyncio

    revoked = TOKEN[:-1] + ("x" if TOKEN[-1] != "x" else "y")  # well-formed, refused by the server
    env = clean_environment(
        TELEGRAM_BOT_TOKEN=revoked,
        CLIPCHAT_MODELS=str(world_dir),
        HF_HUB_OFFLINE="1",
        CLIPCHAT_BASE_URL=telegram.base_url,
        DATABASE_URL=f"sqlite:///{tmp_path / 'bot.db'}",
    )
    executable = shutil.which("clipchat")
    command = [executable] if executable else [sys.executable, "-m", "bot.ops.cli"]
    process = await asyncio.create_subprocess_exec(
        *command, "run", cwd=tmp_path, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    _, stderr = await asyncio.wait_for(process.communicate(), 90)  # the fake server answers on this loop meanwhile
    output = stderr.decode()
    assert process.returncode == 2, output
    assert "Traceback" not in output and revoked not in output and revoked.split(":")[1] not in output
    [line] = [line for line in output.splitlines() if not line[:4].isdigit()]
    assert line.startswith("clipchat: ") and "@BotFather" in line


def test_db_reindex_checks_the_models_first_and_fails_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """`db reindex` skipped the check every other model command makes: without the models it went on to the
    database and Telegram, and loaded CLIP only once photos were waiting, with no line saying what to copy."""
    from huggingface_hub import constants

    monkeypatch.chdir(tmp_path)
    for name in [name for name in os.environ if name.startswith("CLIPCHAT_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("CLIPCHAT_HUB_CACHE_DIR", str(tmp_path / "hub"))
    monkeypatch.setenv("CLIPCHAT_MODELS", a_builtin_set())
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", TOKEN)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "ENDPOINT", "http://192.0.2.1")  # TEST-NET: asking it would hang, not fail
    start = time.monotonic()
    assert main(["db", "reindex", "--url", f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}"]) == 2
    assert time.monotonic() - start < 5
    [line] = capsys.readouterr().err.splitlines()
    assert "HF_HUB_OFFLINE" in line and "clipchat prefetch" in line and str(tmp_path / "hub") in line, line
    assert not (tmp_path / "bot.db").exists()  # before the database
