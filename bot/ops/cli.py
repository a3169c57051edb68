"""`clipchat`: one command line, each package contributing its subcommands."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import MutableMapping
from importlib.metadata import version

from clipchat.errors import ClipchatError
from storage import cli as storage_cli
from vision import cli as vision_cli
from vision.catalog.settings import VisionSettings

from . import reindex, runner, sizing
from .logs import configure_logging, read_log_settings

# The Hugging Face libraries' settings: HF_HUB_OFFLINE, HF_HOME, HF_HUB_CACHE, HF_ENDPOINT, HF_TOKEN, ... and these
HUB_NAMES = frozenset({"TRANSFORMERS_OFFLINE", "HUGGING_FACE_HUB_TOKEN"})


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="clipchat", description="A Telegram assistant that looks at photos.")
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="log what the models are doing (at least INFO; see CLIPCHAT_LOG_LEVEL)",
    )
    parser.add_argument("--version", action="version", version=f"clipchat {version('clipchat')}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    runner.add_commands(commands)
    vision_cli.add_commands(commands)
    reindex.add_command(storage_cli.add_commands(commands))
    sizing.add_command(commands)
    return parser


def hub_settings_from_env_file(path: str = ".env", environ: MutableMapping[str, str] = os.environ) -> list[str]:
    """Put the Hugging Face libraries' own settings found in `path` into the environment; returns their names.

    `.env` feeds clipchat's settings (prefix CLIPCHAT_), but huggingface_hub reads HF_HUB_OFFLINE,
    HF_HOME, HF_TOKEN, ... from os.environ once, when it is first imported: so they go there before
    anything imports it. A variable already set in the environment wins, as it does for clipchat's own.
    """
    from dotenv import dotenv_values

    taken = []
    for name, value in dotenv_values(path).items():
        if value is not None and name not in environ and (name.startswith("HF_") or name in HUB_NAMES):
            environ[name] = value
            taken.append(name)
    return taken


def main(argv: list[str] | None = None) -> int:
    # Before any command runs: nothing this module imports loads huggingface_hub (the models load inside commands)
    taken = hub_settings_from_env_file()
    args = build_parser().parse_args(argv)
    try:  # CLIPCHAT_LOG_LEVEL and CLIPCHAT_LOG_FORMAT, before anything logs
        configure_logging(read_log_settings(), verbose=args.verbose)
    except ClipchatError as error:
        print(f"clipchat: {error.detail}", file=sys.stderr)
        return 2
    if taken:  # names only: HF_TOKEN's value never reaches a log
        logging.getLogger(__name__).info("Hugging Face settings from .env: %s", ", ".join(taken))
    try:
        return args.handler(args, VisionSettings())
    except ClipchatError as error:
        print(f"clipchat: {error.detail}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
