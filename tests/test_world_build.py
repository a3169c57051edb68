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
