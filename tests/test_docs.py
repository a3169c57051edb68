"""The documents a newcomer reads: short where they look first, and every link, path and setting in them real."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = [ROOT / "README.md", ROOT / "CONTRIBUTING.md", ROOT / "ARCHITECTURE.md", ROOT / "deploy" / "README.md"]
DOCUMENTS += sorted((ROOT / "docs").glob("*.md"))
TOP_LEVEL = {path.name for path in ROOT.iterdir()}
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
# A repository path in backticks: it starts at a top-level entry and ends in a file type the repository keeps.
PATH = re.compile(r"`((?:[\w.-]+/)+[\w.*{},-]*\.(?:py|json|jsonl|txt|md|yml|yaml|cfg|cpp|sh|mako|po|toml))`")
PLACEHOLDERS = ("NNNN", "NAME")
# The operator's files: their comments are instructions, and their commands are run as written.
DEPLOY_FILES = [ROOT / "deploy" / "Dockerfile", *sorted((ROOT / "deploy").glob("*.yml"))]
DEPLOY_FILES += [ROOT / "compose.yaml", ROOT / "deploy" / "clipchat.service"]


def names(paths: list[Path]) -> list[str]:
    return [str(path.relative_to(ROOT)) for path in paths]


def unreleased() -> str:
    """CHANGELOG.md's Unreleased section: what it says about the tree as it is (a released section is history)."""
    return (ROOT / "CHANGELOG.md").read_text().split("\n## [Unreleased]\n", 1)[1].split("\n## [", 1)[0]


def everything_read() -> dict[str, str]:
    """Every text a reader takes for the truth about this tree, by name: the documents, the changelog's
    Unreleased section and the deploy files."""
    texts = {name: path.read_text() for name, path in zip(names(DOCUMENTS + DEPLOY_FILES), DOCUMENTS + DEPLOY_FILES)}
    texts["CHANGELOG.md (Unreleased)"] = unreleased()
    return texts


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(document: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", document.read_text(), flags=re.S)  # a `# comment` in a code block is no heading
    return {slug(heading) for heading in re.findall(r"^#{1,6} (.+)$", text, re.M)}


def test_the_readme_stays_short_and_names_the_fast_lane() -> None:
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 250, "the README is where newcomers look: move detail into docs/"
    assert 'python3 -m pytest -m "not world"' in readme


def test_the_moved_sections_have_their_documents() -> None:
    """Benchmarks, operating and most settings moved out of the README; its links and the documents must meet."""
    readme = (ROOT / "README.md").read_text()
    for document in ("docs/benchmarks.md", "docs/operating.md", "docs/settings.md", "CONTRIBUTING.md"):
        assert (ROOT / document).is_file() and f"]({document})" in readme, document
    benchmarks = (ROOT / "docs" / "benchmarks.md").read_text()
    assert "python3 -m bench" in benchmarks
    assert re.search(r"^## .*\(\d{4}-\d{2}-\d{2}, commit [0-9a-f]{7}\)$", benchmarks, re.M), "figures carry their date"


@pytest.mark.parametrize("document", DOCUMENTS, ids=names(DOCUMENTS))
def test_every_relative_link_leads_to_a_file_and_heading_that_exist(document: Path) -> None:
    broken = []
    for target in LINK.findall(document.read_text()):
        if re.match(r"[a-z]+:", target):  # https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        linked = (document.parent / path).resolve() if path else document
        if not linked.exists() or (anchor and linked.suffix == ".md" and anchor not in anchors(linked)):
            broken.append(target)
    assert not broken, broken


@pytest.mark.parametrize("document", DOCUMENTS, ids=names(DOCUMENTS))
def test_every_repository_path_the_docs_name_exists(document: Path) -> None:
    """Modules move (vision/ became sub-packages): a path in the docs must still be there."""
    missing = []
    for path in PATH.findall(document.read_text()):
        if path.split("/")[0] not in TOP_LEVEL or any(mark in path for mark in PLACEHOLDERS):
            continue
        braces = re.search(r"\{([^}]*)\}", path)
        options = [path.replace(braces.group(0), option) for option in braces.group(1).split(",")] if braces else [path]
        missing += [option for option in options if not list(ROOT.glob(option))]
    assert not missing, missing


def test_every_setting_the_docs_name_exists() -> None:
    """A setting in the docs is one the bot reads (or a compose variable, or the tests' own)."""
    from bot.ops.env_example import env_example, every_variable

    settings = set(re.findall(r"^#? ?([A-Z][A-Z0-9_]+)=", env_example(), re.M))
    assert settings < every_variable() and "CLIPCHAT_TOKEN" in every_variable()  # the second names too
    settings |= every_variable()
    compose = {name for path in (ROOT / "deploy").glob("*.yml") for name in re.findall(r"\$\{(\w+)", path.read_text())}
    tests = set(re.findall(r"CLIPCHAT_TEST_\w+", (ROOT / "tests" / "conftest.py").read_text()))
    known = settings | compose | tests
    unknown = set()
    for document in DOCUMENTS:
        for name in re.findall(r"CLIPCHAT_[A-Z0-9_]+", document.read_text()):
            if name.endswith("_"):  # a prefix: `CLIPCHAT_DAILY_*`, "prefix `CLIPCHAT_`"
                if not any(setting.startswith(name) for setting in known):
                    unknown.add(name)
            elif name not in known:
                unknown.add(name)
    assert settings and not unknown, unknown


def test_the_settings_reference_is_what_the_generator_prints() -> None:
    from bot.ops.env_example import MARKDOWN_COMMAND, settings_markdown

    assert (ROOT / "docs" / "settings.md").read_text() == settings_markdown() + "\n", f"run: {MARKDOWN_COMMAND}"


def test_the_settings_reference_has_each_setting_once_with_its_default_values_and_meaning() -> None:
    from bot.ops.env_example import env_example, settings_markdown

    rows = [line.split(" | ") for line in settings_markdown().splitlines() if line.startswith("| `")]
    documented = [re.match(r"\| `(\w+)`", row[0]).group(1) for row in rows]  # type: ignore[union-attr]
    settings = re.findall(r"^#? ?([A-Z][A-Z0-9_]+)=", env_example(), re.M)
    assert sorted(documented) == sorted(settings) and len(set(documented)) == len(documented)
    assert all(len(row) == 4 and row[3].removesuffix(" |").strip() for row in rows), "a setting without a description"
    row = dict(zip(documented, rows, strict=True))
    assert row["CLIPCHAT_USER_QUEUE"][1:3] == ["`16`", "1 to 1000"]
    assert row["CLIPCHAT_ALBUM_WAIT_S"][1:3] == ["`1.0`", "over 0, at most 60"]
    assert row["CLIPCHAT_INFERENCE"][1:3] == ["`local`", "local, ray"]
    assert row["CLIPCHAT_LOG_LEVEL"][1:3] == ["—", "DEBUG, INFO, WARNING, ERROR"]
    assert row["CLIPCHAT_CUDA_GRAPHS"][1:3] == ["`false`", "true, false"]
    assert row["DATABASE_URL"][0] == "| `DATABASE_URL` (or `CLIPCHAT_DATABASE_URL`)"
    assert "CLIPCHAT_STATE_DIR" in row and "CLIPCHAT_STATE_DIR_PATH" not in row


def test_a_setting_no_section_places_stops_both_generators() -> None:
    """A new field must be given a concern in SECTIONS, or it would be missing from both files."""
    from pydantic_settings import BaseSettings

    from bot.ops.cli import build_parser  # imports every command, so every settings class
    from bot.ops.env_example import SECTIONS, SETTINGS, Section, env_example, settings_markdown, unplaced
    from storage import StorageSettings

    build_parser()
    ours = {cls for cls in BaseSettings.__subclasses__() if cls.__module__.split(".")[0] in TOP_LEVEL}
    assert ours <= set(SETTINGS), f"add to SETTINGS and SECTIONS: {ours - set(SETTINGS)}"
    assert unplaced() == []
    database = next(section for section in SECTIONS if section.settings is StorageSettings)
    without = tuple(section for section in SECTIONS if section is not database)
    assert unplaced(without) == [f"StorageSettings.{name} is not in any section" for name in database.fields]
    twice = (*SECTIONS, Section("Again", StorageSettings, ("retention_days", "no_such_setting")))
    assert unplaced(twice) == [
        "StorageSettings has no field no_such_setting",
        "StorageSettings.retention_days is in two sections",
    ]
    for generate in (env_example, settings_markdown):
        with pytest.raises(RuntimeError, match=r"StorageSettings\.database_url is not in any section"):
            generate(without)


def test_clipchat_env_example_markdown_prints_the_reference() -> None:
    import subprocess

    from bot.ops.env_example import settings_markdown
    from tests.test_bot_cli import command

    result = subprocess.run([*command(), "env-example", "--markdown"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout == settings_markdown() + "\n"


NUMBER_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven"]
NUMBER_WORDS += ["twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen", "twenty"]
TABLE_COUNT = re.compile(rf"\b(\d+|{'|'.join(NUMBER_WORDS)})\s+(?:SQL\s+|database\s+)?tables\b", re.I)


def number(word: str) -> int:
    return int(word) if word.isdigit() else NUMBER_WORDS.index(word.lower())


async def test_the_docs_count_and_name_the_tables_the_migrations_build(tmp_path: Path) -> None:
    """The docs said "six tables" three migrations on. A count, in words or digits, is the schema's: the tables the
    migrations build on a blank database, which are the models' (tests/test_storage.py holds the two equal).
    `alembic_version` does not count: it is Alembic's record of the revision, not a table the bot keeps rows in
    (it has no model). docs/design.md's storage section names every table."""
    from sqlalchemy import inspect

    from storage import Base, connect_database, upgrade

    engine = connect_database(f"sqlite:///{tmp_path / 'schema.db'}")
    try:
        await upgrade(engine)
        async with engine.connect() as connection:
            built = set(await connection.run_sync(lambda sync: inspect(sync).get_table_names()))
    finally:
        await engine.dispose()
    tables = built - {"alembic_version"}
    assert "alembic_version" in built and tables == set(Base.metadata.tables), built ^ set(Base.metadata.tables)
    wrong = [
        (name, found.group(0))
        for name, text in everything_read().items()
        for found in TABLE_COUNT.finditer(text)
        if number(found.group(1)) != len(tables)
    ]
    assert not wrong, f"the migrations build {len(tables)} tables (alembic_version aside): {wrong}"
    storage = (ROOT / "docs" / "design.md").read_text().split("\n## storage/\n", 1)[1].strip().split("\n\n")[0]
    assert tables <= set(re.findall(r"`(\w+)`", storage)), tables - set(re.findall(r"`(\w+)`", storage))


# Figures that drift with the machine, the models and the code: they carry a date, in docs/benchmarks.md only.
# (CHANGELOG.md keeps the figures of each change, as CONTRIBUTING.md says; README's "about 12 minutes" for the test
# suite and downloads' sizes are not measurements of the bot.)
DATED_FIGURES = {
    "throughput": re.compile(r"\d[\d.,]*\s*(?:photos|tokens|captions|requests)/s\b"),
    "resident memory": re.compile(r"\d[\d.]*\s*[GM]i?B\s+(?:resident|RSS)\b|resident[^.\n]{0,30}?\d[\d.]*\s*[GM]i?B"),
    "speed-up": re.compile(r"\d[\d.]*\s*(?:%|x|×)\s+(?:faster|slower)\b"),
    # a rate such as 0.99 (not a version: torchvision>=0.19), or a count right out of a held-out set
    "score": re.compile(r"(?<![\d.<>=~])0\.\d\d(?![\d.])|\b\d+/\d+\s+held\s+out\b"),
}
FIGURES_LIVE_IN = {"docs/benchmarks.md", "CHANGELOG.md (Unreleased)"}


def test_dated_figures_live_only_in_benchmarks() -> None:
    """Measurements (photos/s, resident memory, speed-ups, model scores) go stale where nobody dates them: the
    deploy notes said "about 2 GB resident" after the models grew past 2.3 GB, and docs/models.md kept a chat
    model's 0.99 after its retraining scored 0.97. Elsewhere a doc says what to run and links the dated figure."""
    found = [
        (name, kind, figure.group(0))
        for name, text in everything_read().items()
        if name not in FIGURES_LIVE_IN
        for kind, pattern in DATED_FIGURES.items()
        for figure in pattern.finditer(text)
    ]
    assert not found, "\n".join(f"{name}: {kind} {figure!r}" for name, kind, figure in found)
