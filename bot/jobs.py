"""Periodic jobs on python-telegram-bot's JobQueue (APScheduler): retention and database upkeep."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from storage import maintain, purge_older_than, statistics, write_with_retry

from .context import BotContext
from .doctor import HEARTBEAT_S, beat

log = logging.getLogger(__name__)


async def purge_expired(context: BotContext) -> None:
    """Delete turns and photo records older than the retention period."""
    services = context.services
    age = timedelta(days=services.storage_settings.retention_days)
    removed = await write_with_retry(services.sessions, lambda session: purge_older_than(session, age))
    log.info("retention (%d days): removed %d turns and %d photo records", age.days, removed.turns, removed.images)


async def maintain_database(context: BotContext) -> None:
    """Refresh planner statistics, trim the SQLite log, and log what the bot holds and how busy it is."""
    services = context.services
    done = await maintain(services.engine)
    async with services.sessions() as session:
        counts = await statistics(session)
    queues = {name: batcher.waiting for name, batcher in _batchers(services.inference)}
    log.info("database maintenance (%s); rows %s; model queues %s", done, counts, queues)


def _batchers(inference):
    for name in ("photos", "texts", "questions"):
        batcher = getattr(inference, name, None)
        if batcher is not None:
            yield name, batcher


async def heartbeat(context: BotContext) -> None:
    """Touch the heartbeat file that `clipchat doctor --alive` (the container health check) reads."""
    await asyncio.to_thread(beat, context.services.settings)


def schedule(job_queue, maintenance_hours: float) -> None:
    job_queue.run_repeating(purge_expired, interval=timedelta(days=1), first=timedelta(minutes=1),
                            name="retention")
    job_queue.run_repeating(maintain_database, interval=timedelta(hours=maintenance_hours),
                            first=timedelta(minutes=5), name="maintenance")
    # first=1, not 0: APScheduler's interval trigger puts a start time already past one whole
    # interval away, so `doctor --alive` in a fresh container said "no heartbeat" for 30 s.
    job_queue.run_repeating(heartbeat, interval=HEARTBEAT_S, first=1, name="heartbeat")
