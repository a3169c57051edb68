"""`clipchat`: one command line, each package contributing its subcommands."""

from __future__ import annotations

import argparse
import logging
import sys

from clipchat.errors import ClipchatError
from storage import cli as storage_cli
from vision import cli as vision_cli
from vision.settings import VisionSettings

from . import runner


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="clipchat", description="A Telegram assistant that looks at photos.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what the models are doing")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    runner.add_commands(commands)
    vision_cli.add_commands(commands)
    storage_cli.add_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return args.handler(args, VisionSettings())
    except ClipchatError as error:
        print(f"clipchat: {error.detail}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
