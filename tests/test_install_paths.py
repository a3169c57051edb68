"""The install and start paths, run as written: the compose first step, the systemd unit as installed.

The docs are the source: each test takes its commands from deploy/README.md or the unit's header, so a
command that stops working fails here, not in an operator's first hour.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import BOT_TOKEN
from tests.test_deploy import compose_cli

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
PIP_QUIET = ("--no-build-isolation", "--disable-pip-version-check")


def bash_blocks(markdown: Path) -> list[str]:
    return re.findall(r"```bash\n(.*?)```", markdown.read_text(), re.S)


def compose_first_step() -> str:
    """deploy/README.md's first step before `docker compose up -d`: the block that makes deploy/.env."""
    (block,) = [block for block in bash_blocks(DEPLOY / "README.md") if block.startswith("cp deploy/.env.example")]
    return block


def run_first_step(clone: Path) -> subprocess.CompletedProcess:
    """The block in a copy of the clone, the token typed at its prompt; `sudo` is this (root) shell itself."""
    shutil.copy(ROOT / "compose.yaml", clone)
    shutil.copytree(DEPLOY, clone / "deploy", ignore=shutil.ignore_patterns(".env", "*_token"))
    script = 'sudo() { "$@"; }\nset -e\n' + compose_first_step()
    return subprocess.run(
        ["bash", "-c", script],
        cwd=clone,
        input=BOT_TOKEN + "\n",
        capture_output=True,
        text=True,
        timeout=60,
        env={key: value for key, value in os.environ.items() if key != "POSTGRES_PASSWORD"},
    )


@pytest.mark.skipif(os.geteuid() != 0, reason="the first step's `sudo chown 10001` needs root here")
def test_the_compose_first_step_as_written_gives_a_valid_project_with_the_token_as_a_secret(tmp_path: Path) -> None:
    step = run_first_step(tmp_path)
    assert step.returncode == 0, step.stderr
    secret = tmp_path / "deploy" / "telegram_bot_token"
    assert secret.read_text().strip() == BOT_TOKEN
    mode = secret.stat()
    assert stat.S_IMODE(mode.st_mode) & 0o077 == 0, "only its owner may read the token"
    assert mode.st_uid == 10001, "the containers' user must own it, or the bot cannot read it"
    settings = (tmp_path / "deploy" / ".env").read_text()
    assert re.search(r"^POSTGRES_PASSWORD=[0-9a-f]{48}$", settings, re.M), "a random password, once"
    assert not re.search(r"^TELEGRAM_BOT_TOKEN=", settings, re.M), "no token placeholder to shadow the file"

    compose = compose_cli()
    environment = {key: value for key, value in os.environ.items() if not key.startswith(("COMPOSE_", "CLIPCHAT_"))}
    environment.pop("POSTGRES_PASSWORD", None)
    for files in ([], ["-f", "deploy/docker-compose.yml", "-f", "deploy/docker-compose.ray.yml"]):
        if files:
            (tmp_path / "deploy" / "ray_auth_token").write_text("0" * 64)
        result = subprocess.run(
            [*compose, *files, "config", "--format", "json"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            env=environment,
        )
        assert result.returncode == 0, result.stderr
        bot = json.loads(result.stdout)["services"]["bot"]
        assert "TELEGRAM_BOT_TOKEN" not in bot["environment"], "docker inspect would show it"
        assert bot["environment"]["TELEGRAM_BOT_TOKEN_FILE"] == "/run/secrets/telegram_bot_token"
        assert {secret["source"] for secret in bot["secrets"]} >= {"telegram_bot_token"}
        assert BOT_TOKEN not in result.stdout


def test_compose_builds_from_the_checkout_and_pulls_nothing_that_is_not_published() -> None:
    """No release has published an image, so every clipchat service builds its image here."""
    import yaml

    for path in (DEPLOY / "docker-compose.yml", DEPLOY / "docker-compose.ray.yml"):
        for name, service in yaml.safe_load(path.read_text())["services"].items():
            if name == "bot" and "build" not in service:
                continue  # the override's bot: the base file's build stands
            if "clipchat" in service.get("image", "clipchat"):
                assert service.get("pull_policy") == "build" and service["build"]["dockerfile"] == "deploy/Dockerfile"
                assert not service["image"].startswith("ghcr.io/"), (path.name, name, service["image"])


@pytest.fixture(scope="module")
def installed_root(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A shell prefix that runs a command where /opt/clipchat is clipchat installed in a venv, as the unit says.

    A private mount namespace with /opt a throwaway tmpfs: the venv the unit's ExecStart names exists there,
    and nowhere on this machine. It is built once (this Python's packages, this checkout without its deps).
    """
    if shutil.which("systemd-analyze") is None or shutil.which("unshare") is None:
        pytest.skip("systemd-analyze or unshare is not installed")
    if subprocess.run(["unshare", "--mount", "true"], capture_output=True).returncode != 0:
        pytest.skip("no private mount namespace here (needs root)")
    venv = tmp_path_factory.mktemp("opt") / "clipchat"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", "--system-site-packages", venv], check=True)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            venv / "bin" / "python",
            "install",
            "-q",
            "--no-deps",
            *PIP_QUIET,
            ROOT,
        ],
        check=True,
        capture_output=True,
    )
    assert os.access(venv / "bin" / "clipchat", os.X_OK)
    return f"mount -t tmpfs tmpfs /opt && mkdir /opt/clipchat && mount --bind {venv} /opt/clipchat && "


def verify(installed_root: str, unit: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["unshare", "--mount", "sh", "-c", installed_root + f"systemd-analyze verify {unit}"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=unit.parent,
    )


def test_systemd_analyze_verify_passes_on_the_unit_as_installed(installed_root: str, tmp_path: Path) -> None:
    result = verify(installed_root, DEPLOY / "clipchat.service")
    assert result.returncode == 0 and result.stdout + result.stderr == "", result.stdout + result.stderr
    # The same check on a unit with one bad value fails: it is not a check that passes on anything.
    broken = tmp_path / "clipchat.service"
    broken.write_text((DEPLOY / "clipchat.service").read_text().replace("Restart=on-failure", "Restart=sometimes"))
    result = verify(installed_root, broken)
    assert "Failed to parse service restart specifier" in result.stderr


def test_the_unit_s_header_installs_what_the_unit_runs() -> None:
    """The header's commands make every path the unit names: the venv, the settings, the credential, the state."""
    unit = (DEPLOY / "clipchat.service").read_text()
    header = [line.removeprefix("#   ") for line in unit.splitlines() if line.startswith("#   ")]
    header = header[: next(i for i, line in enumerate(header) if "systemctl enable" in line) + 1]
    commands = "\n".join(header)
    assert not re.search(r"sudo -u clipchat", commands), "the clipchat user cannot create /opt/clipchat"
    assert "sudo python3 -m venv /opt/clipchat" in commands and "/opt/clipchat/bin/pip install ." in commands
    assert "install -d" in commands and "/etc/clipchat" in commands
    for path in re.findall(r"^(?:EnvironmentFile|ExecStart|ExecStartPre|WorkingDirectory)=(\S+)", unit, re.M):
        root = path if not path.startswith("/opt/clipchat/") else "/opt/clipchat"
        assert root in commands or path.startswith("/var/lib/clipchat"), path
    (token_file,) = re.findall(r"^Environment=TELEGRAM_BOT_TOKEN_FILE=(\S+)$", unit, re.M)
    assert re.search(rf"install -m 0640 -g clipchat /dev/stdin {token_file}$", commands, re.M), (
        "the header writes the token file the unit names, readable by the service and root only"
    )
    assert "--home-dir /var/lib/clipchat --create-home" in commands, "WorkingDirectory= exists"


def test_the_build_context_leaves_out_the_secrets_the_compose_first_step_writes() -> None:
    """`docker build .` sends the directory to the engine: the token and .env files must not go with it.

    Docker's rule, in short: patterns in order, the last one that matches a path (or a folder above it) wins,
    and `!` lets a path back in.
    """
    import fnmatch

    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]

    def ignored(path: str) -> bool:
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        verdict = False
        for pattern in patterns:
            negated, glob = pattern.startswith("!"), pattern.removeprefix("!").rstrip("/")
            globs = {glob, glob.removeprefix("**/")} if glob != "**" else {"*"}
            if any(fnmatch.fnmatch(prefix, g) for prefix in prefixes for g in globs):
                verdict = not negated
        return verdict

    for secret in ("deploy/.env", "deploy/telegram_bot_token", "deploy/ray_auth_token", ".env", ".git/config"):
        assert ignored(secret), secret
    for needed in ("pyproject.toml", "README.md", "bot/ops/cli.py", "vision/fast/kernels/bf16_rows.cpp"):
        assert not ignored(needed), needed
