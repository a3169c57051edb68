"""Periodic jobs on python-telegram-bot's JobQueue (APScheduler): retention, database upkeep, heartbeat."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
import time
from datetime import timedelta
from typing import NoReturn

from telegram.ext import Application

from ..core import records
from ..core.heartbeat import EXIT_STUCK, Pulse, beat, check
from .context import BotContext, BotData

log = logging.getLogger(__name__)
# How long the bot that exits to be restarted tries to stop cleanly first: the replies in flight have
# already heard "try again" (they wait at most the model timeout), so this is polling's last request,
# sends under way and the database's close.
CLEAN_STOP_S = 30.0


async def purge_expired(context: BotContext) -> None:
    """Delete turns and photo records older than the retention period."""
    days, removed = await records.purge_expired(context.services)
    log.info("retention (%d days): removed %d turns and %d photo records", days, removed.turns, removed.images)


async def maintain_database(context: BotContext) -> None:
    """Refresh planner statistics, trim the SQLite log, and log what the bot holds and how busy it is."""
    log.info(await records.upkeep(context.services))


async def heartbeat(context: BotContext) -> None:
    """Touch the heartbeat file that `clipchat doctor --alive` (the container health check) reads,
    unless the models are stuck; exit for a restart once they have been stuck too long."""
    services = context.services
    settings = services.settings
    verdict = check(services.models.stalled_for(), settings.model_timeout_s, settings.stuck_exit_s)
    if verdict.pulse is Pulse.EXIT:
        exit_for_a_restart(context.application, verdict.problem or "stuck")
    elif verdict.pulse is Pulse.SKIP:
        log.error(
            "%s: no heartbeat, so the health check fails; the bot exits for a restart if still stuck %g s past the limit",
            verdict.problem,
            settings.stuck_exit_s,
        )
    else:
        await asyncio.to_thread(beat, settings.heartbeat_path())


def exit_for_a_restart(application: Application, problem: str) -> None:
    """Stop the bot and end the process with EXIT_STUCK, for systemd or Docker to start it afresh.

    The stop is PTB's, as on SIGTERM (polling ends, the sends under way finish, the database closes),
    but the process must end even if it cannot: the stuck model thread never returns, and Python joins
    a ThreadPoolExecutor's threads when the interpreter exits, so a process left to end on its own would
    wait for it for ever. So the end is os._exit: in the shutdown hook once the clean stop got there
    (`leave`), else from this timer after CLEAN_STOP_S.
    """
    data: BotData = application.bot_data
    if data.exit_status is not None:
        return  # already on its way out
    data.exit_status = EXIT_STUCK
    log.error("%s: exiting with status %d so that systemd or Docker restarts the bot", problem, EXIT_STUCK)
    threading.Thread(
        target=_leave_after, args=(CLEAN_STOP_S, EXIT_STUCK), name="exit-for-a-restart", daemon=True
    ).start()
    application.stop_running()


def _leave_after(seconds: float, status: int) -> None:
    time.sleep(seconds)
    log.error("the bot did not stop cleanly within %g s: exiting with status %d now", seconds, status)
    leave(status)


def leave(status: int) -> NoReturn:
    """End the process now with `status`, without waiting for threads that may never end (see above)."""
    logging.shutdown()  # flush the log: os._exit skips every handler
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


def schedule(job_queue, maintenance_hours: float, heartbeat_s: float) -> None:
    job_queue.run_repeating(purge_expired, interval=timedelta(days=1), first=timedelta(minutes=1), name="retention")
    job_queue.run_repeating(
        maintain_database, interval=timedelta(hours=maintenance_hours), first=timedelta(minutes=5), name="maintenance"
    )
    # first=1, not 0: APScheduler's interval trigger puts a start time already past one whole
    # interval away, so `doctor --alive` in a fresh container said "no heartbeat" for 30 s.
    job_queue.run_repeating(heartbeat, interval=heartbeat_s, first=1, name="heartbeat")
