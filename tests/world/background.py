"""Build the world in a process of its own while the tests that need none run.

The build takes minutes of CPU, the tests that need no world leave much of two cores idle (they wait on
subprocesses, sockets and timers), so the build starts as soon as the session knows a test will need
the world, at the lowest CPU priority: those tests keep the CPU they ask for, the build takes the rest.
"""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from .build import BASE_COMPLETE, BUILDING, COMPLETE

ROOT = Path(__file__).resolve().parents[2]
LOWEST_PRIORITY = 19


PR_SET_PDEATHSIG = 1  # prctl(2)


def _end_with_parent() -> None:
    """In the build's process, before it runs: SIGTERM when pytest dies without ending it (killed, timed out).

    `stop` runs only when the session ends normally; a killed pytest would otherwise leave minutes of training
    behind. The build's own SIGTERM handler (`python -m tests.world`) takes its trainers down with it."""
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _forget_a_killed_build(directory: Path) -> None:
    """Remove the first stage's marker a killed build left, unless a build is running there now: the tests
    would otherwise read the models of that build while this one rewrites them. (The build removes it too,
    but only once it has imported its libraries and holds the folder's lock.)"""
    if (directory / COMPLETE).is_file():
        return
    with open(directory / BUILDING, "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return  # building now: its markers are its own
        (directory / BASE_COMPLETE).unlink(missing_ok=True)


class BackgroundBuild:
    """`python -m tests.world build DIRECTORY`, started now; `result()` waits for it.

    Several may start into one folder (one per pytest-xdist worker): the first trains, the others wait for
    it and then find the world built. Each logs to a file of its own, named after `name`."""

    def __init__(self, directory: Path, name: str = "main", env: dict[str, str] | None = None) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        _forget_a_killed_build(directory)
        self.log_path = directory / f"build-{name}.log"
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "tests.world", "build", str(directory)],
                cwd=ROOT,  # this checkout's code, whatever is installed
                env=env,  # None: this process's
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: `stop` reaches the trainers it starts too
                preexec_fn=_end_with_parent,
            )
        # Before it starts its trainers (they inherit it): it is still importing its libraries
        os.setpriority(os.PRIO_PROCESS, self.process.pid, LOWEST_PRIORITY)

    def result(self, stage: str = COMPLETE, timeout: float = 3600) -> Path:
        """The world once `stage` is built (BASE_COMPLETE: all but the VLM; COMPLETE: all of it), whichever
        build in the folder builds it; raises with the end of this build's log if it ended without."""
        deadline = time.monotonic() + timeout
        while not (self.directory / stage).is_file():
            try:
                code = self.process.wait(timeout=1)
            except subprocess.TimeoutExpired:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the test world was not built in {timeout:.0f} s: {self.log_path}") from None
                continue
            if not (self.directory / stage).is_file():
                tail = self.log_path.read_text(errors="replace")[-4000:]
                raise RuntimeError(f"building the test world failed (exit code {code}):\n{tail}")
        return self.directory

    def stop(self) -> None:
        """End a build still running (the session ended first), trainers included."""
        if self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
