"""python -m tests.world build DIR"""

import argparse
import os
import signal
from pathlib import Path

from .build import build_world


def _end_group(signum: int, frame: object) -> None:
    """Ended (by `BackgroundBuild.stop`, or because pytest died): the trainers this build started end too."""
    os.killpg(os.getpgrp(), signal.SIGKILL)


parser = argparse.ArgumentParser(prog="python -m tests.world")
commands = parser.add_subparsers(dest="command", required=True)
build = commands.add_parser("build", help="build the synthetic world and its trained models into DIR")
build.add_argument("directory", type=Path)
args = parser.parse_args()
if os.getpgrp() == os.getpid():  # a group of its own (the background build): nothing else is in it
    signal.signal(signal.SIGTERM, _end_group)
print(f"built {build_world(args.directory)}")
