"""Periodic jobs on python-telegram-bot's JobQueue (APScheduler): retention, database upkeep, heartbeat."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from ..core import records
from ..core.heartbeat import HEARTBEAT_S, beat, stuck
from .context import BotContext

log = logging.getLogger(__name__)


async def purge_expired(context: BotContext) -> None:
    """Delete turns and photo records older than the retention period."""
    days, removed = await records.purge_expired(context.services)
    log.info("retention (%d days): removed %d turns and %d photo records", days, removed.turns, removed.images)


async def maintain_database(context: BotContext) -> None:
    """Refresh planner statistics, trim the SQLite log, and log what the bot holds and how busy it is."""
    log.info(await records.upkeep(context.services))


async def heartbeat(context: BotContext) -> None:
    """Touch the heartbeat file that `clipchat doctor --alive` (the container health check) reads,
    unless the models are stuck."""
    services = context.services
    problem = stuck(services.models.stalled_for(), services.settings.model_timeout_s)
    if problem:
        log.error("%s: no heartbeat, so the health check fails and the bot gets restarted", problem)
        return
    await asyncio.to_thread(beat, services.settings.heartbeat_path())


def schedule(job_queue, maintenance_hours: float) -> None:
    job_queue.run_repeating(purge_expired, interval=timedelta(days=1), first=timedelta(minutes=1), name="retention")
    job_queue.run_repeating(
        maintain_database, interval=timedelta(hours=maintenance_hours), first=timedelta(minutes=5), name="maintenance"
    )
    # first=1, not 0: APScheduler's interval trigger puts a start time already past one whole
    # interval away, so `doctor --alive` in a fresh container said "no heartbeat" for 30 s.
    job_queue.run_repeating(heartbeat, interval=HEARTBEAT_S, first=1, name="heartbeat")
