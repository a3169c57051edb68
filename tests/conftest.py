"""Shared fixtures: the synthetic world (built and trained once per test session) and its models.

Tests that need the world are marked `world` and run last: the world builds in the background
meanwhile. `pytest -m "not world"` runs the rest and builds nothing. Set CLIPCHAT_TEST_WORLD=DIR
to keep the built world between runs while developing; without it every session builds a fresh
one, as CI does.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from PIL import Image

from tests.world.scenes import Scene

if TYPE_CHECKING:
    from tests.fault_table import Row
    from tests.world.background import BackgroundBuild

_FIGURES: dict[str, str] = {}  # recorded by this process's test now running
_REPORTED_FIGURES: dict[str, str] = {}  # every test's, gathered from the reports
_REPORTED_ROWS: list[Row] = []
FAULT_ROW, FIGURE = "clipchat fault row", "clipchat figure"  # user-property names
WORLD_INPUT = "clipchat_world"  # the pytest-xdist worker input naming the shared world folder
# Every speed path the machine can run, not those that happen to win this machine's timing: the step, packed-linear
# and kernel tests hold each path to the plain one's results, and the suite must not depend on a stopwatch.
# tests/test_calibration.py asks for auto itself.
os.environ.setdefault("CLIPCHAT_SPEED_PATHS", "all")


@dataclass(frozen=True)
class HeldOut:
    path: Path
    image: Image.Image
    scene: Scene
    seen: bool  # whether training saw this combination of attributes (in other renderings)


def by_split(heldout: list[HeldOut], score) -> dict[str, float]:
    """Mean of `score(held)` over the seen and the unseen combinations separately."""
    out = {}
    for name, wanted in (("seen", True), ("unseen", False)):
        items = [held for held in heldout if held.seen == wanted]
        out[name] = sum(float(score(held)) for held in items) / len(items)
    return out


def attributes_named(caption: str) -> dict[str, str]:
    """The world's caption grammar read back: which size, colour, shape and background a caption names."""
    import re

    match = re.fullmatch(r"a (\w+) (\w+) (\w+) on a (\w+) background\.", caption.strip().lower())
    return dict(zip(("size", "colour", "shape", "background"), match.groups())) if match else {}


def attribute_accuracy(caption: str, scene: Scene) -> float:
    """The fraction of the scene's four attributes the caption names right (0 when it is not a caption)."""
    named = attributes_named(caption)
    return sum(named.get(a) == value for a, value in scene.attributes().items()) / 4


@pytest.fixture(scope="session")
def world_dir(request: pytest.FixtureRequest) -> Path:
    """The world's data, CLIP, GPT-2, captioner and chat model: not yet its VLM (`seeing_world_dir`)."""
    from tests.world.build import BASE_COMPLETE, build_world

    build = request.config.stash.get(WORLD_BUILD, None)
    if build is not None:  # started when collection ended, and built while the tests before this one ran
        return build.result(BASE_COMPLETE)
    return build_world(world_folder(request.config))


@pytest.fixture(scope="session")
def seeing_world_dir(world_dir: Path, request: pytest.FixtureRequest) -> Path:
    """The whole world, its VLM and placed photos too: the build's last stage, trained while the tests that
    need only `world_dir` run."""
    build = request.config.stash.get(WORLD_BUILD, None)
    return build.result() if build is not None else world_dir


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("clipchat-cache")


@pytest.fixture(scope="session")
def world_models(world_dir: Path, cache_dir: Path):
    """The world's prefix-mode model set: tiny CLIP, tiny GPT-2, trained captioner."""
    from vision import load_models

    return load_models(str(world_dir), device="cpu", cache_dir=cache_dir)


@pytest.fixture(scope="session")
def guided_models(world_dir: Path, cache_dir: Path):
    """The same CLIP and GPT-2 with no captioning checkpoint: CLIP-guided decoding."""
    from vision import load_models

    return load_models(str(world_dir / "guided"), device="cpu", cache_dir=cache_dir)


@pytest.fixture(scope="session")
def heldout(world_dir: Path) -> list[HeldOut]:
    """240 images never seen in training, one per combination of attributes; a fifth of the combinations
    (`seen=False`) never reached training at all."""
    folder = world_dir / "data" / "heldout"
    items = []
    for line in (folder / "captions.jsonl").read_text().splitlines():
        row = json.loads(line)
        scene = Scene(row["size"], row["colour"], row["shape"], row["background"])
        with Image.open(folder / row["image"]) as image:
            items.append(HeldOut(folder / row["image"], image.convert("RGB"), scene, row["seen"]))
    return items


@pytest.fixture(scope="session")
def understood(world_models, heldout: list[HeldOut]) -> list[HeldOut]:
    """Held-out photos the world's models read exactly right once JPEG-compressed, as Telegram sends them.

    The bot's tests check plumbing (the right photo, answer and reply reach the right chat), so
    they use these: a retrained world that misses a few photos still tests the plumbing, while
    the vision and dialogue tests assert the models' accuracy as rates over all of `heldout`.
    """
    from tests.bot_helpers import jpeg
    from vision import load_image

    descriptions = world_models.describe([load_image(jpeg(h.image)) for h in heldout])
    chosen = [h for h, d in zip(heldout, descriptions) if d.caption == h.scene.caption]
    assert len(chosen) >= 0.8 * len(heldout), f"the world's models read only {len(chosen)} photos right"
    return chosen


@pytest.fixture
def figure():
    """Record a measured figure; they are printed together at the end of the run."""

    def record(name: str, value: float | str) -> None:
        _FIGURES[name] = f"{value:.3f}" if isinstance(value, float) else str(value)

    return record


WORLD_BUILD: pytest.StashKey[BackgroundBuild] = pytest.StashKey()
WORLD_TEMPORARY: pytest.StashKey[Path] = pytest.StashKey()


def needs_world(item: pytest.Item) -> bool:
    return "world_dir" in getattr(item, "fixturenames", ())


def needs_seeing_world(item: pytest.Item) -> bool:
    return "seeing_world_dir" in getattr(item, "fixturenames", ())


@pytest.hookimpl(tryfirst=True)  # before `-m` selects by the marks
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that needs the trained world `world`, so that `pytest -m "not world"` is the fast lane,
    and run those tests last: the world builds meanwhile (`pytest_collection_finish`)."""
    for item in items:
        if needs_world(item):
            item.add_marker(pytest.mark.world)
    # stable: each group keeps its order; the tests of the VLM, the build's last stage, come last of all
    items.sort(key=lambda item: (needs_world(item), needs_seeing_world(item)))


def pytest_collection_finish(session: pytest.Session) -> None:
    """Start building the world now if a selected test needs it and no finished one is there.

    Under pytest-xdist every worker collects the same tests and starts a build into one shared folder: the
    build's lock lets the first train and the others wait for it, so a worker that ends early (and stops
    its own build) never leaves the others without a world."""
    from tests.world.background import BackgroundBuild
    from tests.world.build import COMPLETE

    if session.config.option.collectonly or not any(needs_world(item) for item in session.items):
        return
    directory = world_folder(session.config)
    if (directory / COMPLETE).is_file():
        return
    # The build's own processes, as `python -m tests.world build` runs them: it sizes their threads itself
    environment = {name: value for name, value in os.environ.items() if name not in _SET_FOR_CHILDREN}
    session.config.stash[WORLD_BUILD] = BackgroundBuild(directory, worker_id(session.config), environment)


def worker_id(config: pytest.Config) -> str:
    """This pytest-xdist worker's name ("gw0", ...), or "main" without xdist."""
    return getattr(config, "workerinput", {}).get("workerid", "main")


def world_folder(config: pytest.Config) -> Path:
    """CLIPCHAT_TEST_WORLD, or a temporary folder of this session's (one for all its xdist workers)."""
    import tempfile

    configured = os.environ.get("CLIPCHAT_TEST_WORLD")
    if configured:
        return Path(configured)
    shared = getattr(config, "workerinput", {}).get(WORLD_INPUT)
    if shared:
        return Path(shared)
    temporary = config.stash.get(WORLD_TEMPORARY, None)
    if temporary is None:
        temporary = config.stash[WORLD_TEMPORARY] = Path(tempfile.mkdtemp(prefix="clipchat-world-"))
    return temporary


_SET_FOR_CHILDREN: set[str] = set()  # environment a worker beside others set for the processes its tests start


def pytest_configure(config: pytest.Config) -> None:
    """In a pytest-xdist worker beside others: one intra-op thread. Two workers of two threads each on two
    cores spin-wait on each other's OpenMP teams, and a test of a few seconds took twenty times as long.

    The processes its tests start (the CLI, bots, doctor, servers) get one thread too, unless OMP_NUM_THREADS
    is set: a two-thread child beside the other worker waited on its own team the same way."""
    if getattr(config, "workerinput", {}).get("workercount", 1) > 1:
        import torch

        torch.set_num_threads(1)
        if "OMP_NUM_THREADS" not in os.environ:  # a developer's own setting stays theirs, the build's too
            os.environ["OMP_NUM_THREADS"] = "1"
            _SET_FOR_CHILDREN.add("OMP_NUM_THREADS")


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int | None:
    """`-n auto` (pyproject's addopts): one worker per CPU this process may use, at most four; the world's
    tests hold a few hundred megabytes of models each, and several run bots that measure their own memory.
    No more than the CPUs: on a shared 2-core Zen 3, three workers took the `-m "not world"` lane from 223 s to
    368 s (its tests compute more than they wait), for 12% off the full run. PYTEST_XDIST_AUTO_NUM_WORKERS
    still decides when set."""
    if os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS"):
        return None
    return max(1, min(len(os.sched_getaffinity(0)), 4))


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node) -> None:
    """pytest-xdist, in the controller, for each worker: the one folder every worker builds into and reads."""
    node.workerinput[WORLD_INPUT] = str(world_folder(node.config))


def pytest_unconfigure(config: pytest.Config) -> None:
    import shutil

    build = config.stash.get(WORLD_BUILD, None)
    if build is not None:
        build.stop()
    temporary = config.stash.get(WORLD_TEMPORARY, None)  # the controller's or a lone session's, never a worker's
    if temporary is not None:
        shutil.rmtree(temporary, ignore_errors=True)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """Send the fault rows and figures a test recorded with its last report: pytest-xdist carries a report's
    user properties from the worker that ran the test to the controller, which prints them."""
    from tests.fault_table import ROWS

    if call.when == "teardown":
        item.user_properties.extend((FAULT_ROW, dataclasses.asdict(row)) for row in ROWS)
        item.user_properties.extend((FIGURE, [name, value]) for name, value in _FIGURES.items())
        ROWS.clear()
        _FIGURES.clear()
    return (yield)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    from tests.fault_table import Row

    for name, value in report.user_properties:
        if name == FAULT_ROW:
            _REPORTED_ROWS.append(Row(**value))
        elif name == FIGURE:
            _REPORTED_FIGURES[value[0]] = value[1]


def pytest_terminal_summary(terminalreporter) -> None:
    from tests.fault_table import table

    if _REPORTED_ROWS:
        terminalreporter.section("fault table")
        for line in table(_REPORTED_ROWS):
            terminalreporter.write_line(line)
    if _REPORTED_FIGURES:
        terminalreporter.section("measured figures")
        for name, value in sorted(_REPORTED_FIGURES.items()):
            terminalreporter.write_line(f"{name}: {value}")


# --- databases -------------------------------------------------------------------------------------------------

POSTGRES_URL = os.environ.get("CLIPCHAT_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")


@contextlib.asynccontextmanager
async def fresh_postgres():
    """A new, empty PostgreSQL database, as a SQLAlchemy URL; dropped afterwards.

    Skipped only outside CI when no server answers; under CI=true that fails.
    """
    import uuid

    import asyncpg
    from sqlalchemy.engine import make_url

    url = make_url(POSTGRES_URL)
    try:
        admin = await asyncpg.connect(
            user=url.username,
            password=url.password,
            host=url.host,
            port=url.port or 5432,
            database=url.database,
            timeout=5,
        )
    except (OSError, asyncpg.PostgresError) as error:
        if os.environ.get("CI"):
            pytest.fail(f"CI must test PostgreSQL, but {url.render_as_string()} did not answer: {error}")
        pytest.skip(f"no PostgreSQL at {url.render_as_string()}: {error}")
    name = f"clipchat_test_{uuid.uuid4().hex[:10]}"
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield url.set(database=name)
    finally:
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        await admin.close()


@pytest.fixture(params=["sqlite", "postgresql"])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path):
    """A blank database: a SQLite file, or a fresh PostgreSQL database dropped afterwards."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'clipchat.db'}"
        return
    async with fresh_postgres() as url:
        yield url.render_as_string(hide_password=False)


@pytest.fixture
async def engine(database_url: str):
    from storage import connect_database, upgrade

    engine = connect_database(database_url)
    await upgrade(engine)
    yield engine
    await engine.dispose()


@pytest.fixture
def sessions(engine):
    from storage import make_sessionmaker

    return make_sessionmaker(engine)


# --- the bot against a fake Bot API server ---------------------------------------------------------------------

BOT_TOKEN = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"  # well-formed, and valid nowhere but the fake server


@pytest.fixture
async def telegram():
    from tests.fake_telegram import FakeTelegram

    server = await FakeTelegram(BOT_TOKEN).start()
    yield server
    await server.stop()


@pytest.fixture
def bot_settings(telegram, tmp_path: Path):
    from bot.core.settings import BotSettings

    return BotSettings(
        token=BOT_TOKEN,
        base_url=telegram.base_url,
        base_file_url=telegram.base_file_url,
        album_wait_s=0.4,
        state_dir_path=tmp_path / "state",
    )


@pytest.fixture
async def start_bot(world_models, bot_settings, tmp_path: Path):
    """Start the bot on the world's models against the fake server; call again after `stop` to restart it.

    Long polling by default; `webhook=(port, secret)` starts the webhook server instead.
    """
    from bot.adapter.application import build_application
    from bot.adapter.webhook import WebhookServer
    from storage import StorageSettings

    running = []
    webhooks: dict[int, WebhookServer] = {}  # by id(app)

    async def start(settings=None, database_url: str | None = None, webhook: tuple[int, str] | None = None):
        storage = StorageSettings(database_url=database_url or f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}")
        app = build_application(settings or bot_settings, storage_settings=storage, models=world_models)
        await app.initialize()
        await app.post_init(app)
        if webhook:
            port, secret = webhook
            webhooks[id(app)] = WebhookServer(app, f"http://127.0.0.1:{port}/hook", secret)
            await webhooks[id(app)].start("127.0.0.1", port)
        else:
            await app.updater.start_polling(poll_interval=0, timeout=1)
        await app.start()
        running.append(app)
        return app

    async def stop(app) -> None:
        running.remove(app)
        if id(app) in webhooks:
            await webhooks.pop(id(app)).stop()
        if app.updater.running:
            await app.updater.stop()
        await app.stop()
        await app.shutdown()
        await app.post_shutdown(app)

    start.stop = stop
    yield start
    for app in list(running):
        await stop(app)


@pytest.fixture(scope="session")
def answer_server(world_dir: Path):
    """`transformers serve` on loopback serving the world's chat model (tests/answer_server.py): one per run, as it
    takes some 15 s to start; a test that kills it starts it again."""
    from tests.answer_server import TransformersServe

    server = TransformersServe(world_dir / "chat").start()
    yield server
    server.stop()


@pytest.fixture
async def proxy(answer_server):
    """A loopback proxy in front of `answer_server` that records what it was asked and plays its faults."""
    from tests.answer_server import FaultProxy

    proxy = await FaultProxy(answer_server.url).start()
    yield proxy
    await proxy.stop()
