"""The running bot's heartbeat: a file whose age says how long ago the bot last showed it was working.

The beat is a JobQueue job, so it proves the event loop runs; it is skipped while the models are
stuck on one batch for longer than any user would wait, so a hung GPU (which never raises) also
ages the file, `clipchat doctor --alive` fails, and the container or systemd restarts the bot.
"""

from __future__ import annotations

import time
from pathlib import Path

HEARTBEAT_S = 30  # how often the bot touches its heartbeat file


def beat(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{time.time():.0f}\n")


def stuck(stalled_s: float, limit_s: float) -> str | None:
    """Why the bot must not call itself alive, or None."""
    if stalled_s > limit_s:
        return f"the models have been stuck on one batch for {stalled_s:.0f} s (limit {limit_s:g} s)"
    return None


def age(path: Path) -> float | None:
    """Seconds since the last beat; None when the bot never beat here."""
    try:
        return time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return None
