"""The running bot's heartbeat: a file whose age says how long ago the bot last showed it was working.

The beat is a JobQueue job, so it proves the event loop runs; it is skipped while the models are
stuck on one batch for longer than any user would wait, so a hung GPU (which never raises) also
ages the file and `clipchat doctor --alive` fails. A health check only reports, though: Docker
marks the container unhealthy and leaves it running. So once the batch has been stuck for
CLIPCHAT_STUCK_EXIT_S more, the bot exits with EXIT_STUCK, and whatever runs it restarts it on
that non-zero status (systemd's Restart=on-failure, Docker's or Compose's restart: unless-stopped).
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass
from pathlib import Path

HEARTBEAT_S = 30  # how often the bot touches its heartbeat file (the default of CLIPCHAT_HEARTBEAT_S)
MISSED_BEATS = 4  # `doctor --alive` fails when the last beat is older than this many intervals
STUCK_EXIT_S = 60  # the default of CLIPCHAT_STUCK_EXIT_S: two beats past the model timeout
EXIT_STUCK = 75  # the process's exit status when the models are stuck for good (EX_TEMPFAIL: try again)


class Pulse(enum.StrEnum):
    BEAT = "beat"  # touch the heartbeat file
    SKIP = "skip"  # stuck: no beat, so the health check fails; the batch may still end
    EXIT = "exit"  # stuck for good: exit non-zero, so the service manager restarts the bot


@dataclass(frozen=True)
class Verdict:
    pulse: Pulse
    problem: str | None = None  # why the bot must not call itself alive


def check(stalled_s: float, limit_s: float, exit_after_s: float) -> Verdict:
    """What the heartbeat does when the models have run one batch for `stalled_s` seconds: beat up to
    the model timeout `limit_s`, skip beats past it, and exit once `exit_after_s` more have gone by."""
    if stalled_s <= limit_s:
        return Verdict(Pulse.BEAT)
    problem = f"the models have been stuck on one batch for {stalled_s:.0f} s (limit {limit_s:g} s)"
    return Verdict(Pulse.EXIT if stalled_s > limit_s + exit_after_s else Pulse.SKIP, problem)


def beat(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{time.time():.0f}\n")


def age(path: Path) -> float | None:
    """Seconds since the last beat; None when the bot never beat here."""
    try:
        return time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return None
