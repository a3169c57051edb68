"""The running bot's heartbeat: a file whose age says how long ago its event loop last ran a job."""

from __future__ import annotations

import time
from pathlib import Path

HEARTBEAT_S = 30  # how often the bot touches its heartbeat file


def beat(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{time.time():.0f}\n")


def age(path: Path) -> float | None:
    """Seconds since the last beat; None when the bot never beat here."""
    try:
        return time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return None
