"""The heartbeat's decision (bot/core/heartbeat.py): beat, skip the beat, or exit for a restart.
(The bot exiting for real and starting afresh: tests/test_faults.py.)"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from bot.core.heartbeat import EXIT_STUCK, HEARTBEAT_S, STUCK_EXIT_S, Pulse, check
from bot.core.settings import BotSettings


@pytest.mark.parametrize(
    ("stalled_s", "pulse"),
    [
        (0.0, Pulse.BEAT),  # idle
        (119.9, Pulse.BEAT),  # a slow batch, still within what a user waits
        (120.0, Pulse.BEAT),
        (120.1, Pulse.SKIP),  # past the timeout: the health check fails, but the batch may still end
        (180.0, Pulse.SKIP),  # exactly the grace: not yet
        (180.1, Pulse.EXIT),  # stuck for good: exit, for systemd or Docker to restart the bot
        (86_400.0, Pulse.EXIT),
    ],
)
def test_stuck_models_skip_the_beat_then_exit_after_the_grace(stalled_s: float, pulse: Pulse) -> None:
    verdict = check(stalled_s, limit_s=120, exit_after_s=60)
    assert verdict.pulse is pulse
    assert (verdict.problem is None) == (pulse is Pulse.BEAT)
    if verdict.problem:
        assert f"stuck on one batch for {stalled_s:.0f} s (limit 120 s)" in verdict.problem


def test_no_grace_exits_at_the_first_check_past_the_timeout() -> None:
    assert check(2.0, limit_s=2, exit_after_s=0).pulse is Pulse.BEAT
    assert check(2.5, limit_s=2, exit_after_s=0).pulse is Pulse.EXIT


def test_the_settings_default_to_an_exit_a_minute_past_the_timeout() -> None:
    settings = BotSettings(_env_file=None)
    assert (settings.heartbeat_s, settings.stuck_exit_s) == (HEARTBEAT_S, STUCK_EXIT_S) == (30, 60)
    stalled = settings.model_timeout_s + settings.stuck_exit_s
    assert check(stalled, settings.model_timeout_s, settings.stuck_exit_s).pulse is Pulse.SKIP
    assert check(stalled + HEARTBEAT_S, settings.model_timeout_s, settings.stuck_exit_s).pulse is Pulse.EXIT
    assert EXIT_STUCK != 0, "systemd's Restart=on-failure restarts only a non-zero exit"


def test_the_health_check_allows_four_heartbeat_intervals(tmp_path: Path) -> None:
    from bot.ops.doctor import FAIL, OK, alive

    (tmp_path / "heartbeat").write_text("0\n")
    ten_s_ago = time.time() - 10
    os.utime(tmp_path / "heartbeat", (ten_s_ago, ten_s_ago))
    assert alive(BotSettings(_env_file=None, state_dir_path=tmp_path)).status == OK  # 4 x 30 s
    assert alive(BotSettings(_env_file=None, state_dir_path=tmp_path, heartbeat_s=2)).status == FAIL  # 4 x 2 s
