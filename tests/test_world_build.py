"""The background world build never outlives the test session that started it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (ended, not yet reaped by init) counts as ended
    return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"


def test_a_killed_session_takes_its_world_build_with_it(tmp_path: Path) -> None:
    """pytest killed (a CI timeout, ctrl-c twice) must not leave minutes of training running behind it."""
    session = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "from pathlib import Path\n"
            "from tests.world.background import BackgroundBuild\n"
            "build = BackgroundBuild(Path(sys.argv[1]))\n"
            "print(build.process.pid, flush=True)\n"
            "time.sleep(120)\n",
            str(tmp_path / "world"),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert session.stdout is not None
    build = int(session.stdout.readline())
    assert alive(build)
    session.send_signal(signal.SIGKILL)  # no pytest_unconfigure, no `stop`
    session.wait()
    deadline = time.monotonic() + 30
    while alive(build) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not alive(build), "the world build outlived the session that started it"


def test_a_second_build_into_the_same_folder_waits_and_uses_the_first(tmp_path: Path) -> None:
    """Two sessions given one CLIPCHAT_TEST_WORLD: the second must not train into the folder the first is
    filling (twice the CPU, each overwriting the other's files), but wait and use the finished world."""
    import fcntl

    from tests.world.build import BUILDING, COMPLETE

    world = tmp_path / "world"
    world.mkdir()
    with open(world / BUILDING, "w") as first:
        fcntl.flock(first, fcntl.LOCK_EX)  # the first build, still running
        second = subprocess.Popen(
            [sys.executable, "-m", "tests.world", "build", str(world)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            time.sleep(8)  # time enough to import torch and start writing photos
            assert second.poll() is None, second.communicate()[0]
            assert not (world / "data").exists(), "the second build wrote into the folder the first is filling"
            (world / COMPLETE).write_text("built\n")
        except BaseException:
            second.kill()
            raise
    output, _ = second.communicate(timeout=60)
    assert second.returncode == 0, output
    assert not (world / "data").exists()


def test_tests_of_the_base_world_start_while_its_vlm_still_trains(tmp_path: Path) -> None:
    """The VLM is the build's longest stage: the tests that need the rest of the world must not wait for it,
    and the VLM's own tests must."""
    import fcntl
    from concurrent.futures import ThreadPoolExecutor

    from tests.world.background import BackgroundBuild
    from tests.world.build import BASE_COMPLETE, BUILDING, COMPLETE

    world = tmp_path / "world"
    world.mkdir()
    with open(world / BUILDING, "w") as first, ThreadPoolExecutor(2) as waiting:
        fcntl.flock(first, fcntl.LOCK_EX)  # another xdist worker's build, training
        build = BackgroundBuild(world)  # this worker's: waits for that one
        try:
            base, whole = waiting.submit(build.result, BASE_COMPLETE), waiting.submit(build.result)
            time.sleep(2)
            assert not base.done() and not whole.done()
            (world / BASE_COMPLETE).write_text("1s\n")
            assert base.result(timeout=10) == world
            time.sleep(2)
            assert not whole.done(), "the VLM's tests started before the VLM was trained"
            (world / COMPLETE).write_text("2s\n")
        except BaseException:
            build.stop()
            raise
    assert whole.result(timeout=60) == world


def test_a_killed_builds_first_stage_is_not_read_as_built(tmp_path: Path) -> None:
    """A build killed after its first stage left that stage's marker: the next session rebuilds the folder, and
    its tests must wait for the models being rewritten, not read them half-written."""
    from tests.world.background import BackgroundBuild
    from tests.world.build import BASE_COMPLETE

    world = tmp_path / "world"
    world.mkdir()
    (world / BASE_COMPLETE).write_text("1s\n")
    build = BackgroundBuild(world)
    try:
        assert not (world / BASE_COMPLETE).exists()
    finally:
        build.stop()


def test_xdist_workers_share_one_world_folder_and_their_fault_rows_reach_the_summary(tmp_path: Path) -> None:
    """Under pytest-xdist each worker is a process of its own: they must build into and read one world folder
    (two would train twice, on the same two cores), and the fault rows and figures their tests record must
    reach the summary the controller prints."""
    (tmp_path / "test_two.py").write_text(
        "import os, pytest\n"
        "from tests.conftest import world_folder\n"
        "from tests.fault_table import ROWS, Row\n"
        "@pytest.mark.parametrize('n', range(4))\n"
        "def test_records(n, figure, request):\n"
        "    figure(f'folder {n}', str(world_folder(request.config)))\n"
        "    figure(f'worker {n}', os.environ['PYTEST_XDIST_WORKER'])\n"
        "    ROWS.append(Row(f'fault number {n}', 1, 1, 0, 0, 0.0))\n"
    )
    env = {key: value for key, value in os.environ.items() if key != "CLIPCHAT_TEST_WORLD"}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "tests.conftest",
            "-n",
            "2",
            "--dist",
            "load",
            "-q",
            "-p",
            "no:cacheprovider",
            str(tmp_path / "test_two.py"),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if "measured figures" in line)
    figures = dict(line.split(": ", 1) for line in lines[start + 1 :] if ": " in line)
    assert {figures[f"worker {n}"] for n in range(4)} == {"gw0", "gw1"}, figures
    [folder] = {figures[f"folder {n}"] for n in range(4)}
    assert not Path(folder).exists(), "the session's temporary world folder outlived it"
    assert all(any(line.startswith(f"fault number {n} ") for line in lines) for n in range(4)), done.stdout
