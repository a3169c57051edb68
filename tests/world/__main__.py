"""python -m tests.world build DIR"""

import argparse
from pathlib import Path

from .build import build_world

parser = argparse.ArgumentParser(prog="python -m tests.world")
commands = parser.add_subparsers(dest="command", required=True)
build = commands.add_parser("build", help="build the synthetic world and its trained models into DIR")
build.add_argument("directory", type=Path)
args = parser.parse_args()
print(f"built {build_world(args.directory)}")
