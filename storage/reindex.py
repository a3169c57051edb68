"""Re-embedding after a CLIP change: which photos wait for it, and whether a re-index is at work.

Each photo's vector is stored beside the identity of the CLIP that made it, and /search
only compares vectors of the CLIP it runs, so after an upgrade the older photos wait
until `clipchat db reindex` fetches them again. A run keeps a heartbeat row while it
works, so every bot process sharing the database can tell people it is under way.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
from sqlalchemy import ColumnElement, delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from .database import changed_rows
from .models import ImageRecord, ReindexRun, encode_embedding, utcnow

BEAT_S = 10.0  # how often a run says it is alive
ALIVE_S = 60.0  # a run silent for longer has died (killed, machine gone): nobody is re-indexing


@dataclass(frozen=True)
class Waiting:
    """A stored photo embedded by another CLIP: what re-embedding it needs."""

    id: int
    chat_id: int
    file_id: str
    embedding_model: str


def _waiting(model: str, chat_id: int | None) -> list[ColumnElement[bool]]:
    where = [ImageRecord.embedding_model != model, ImageRecord.file_gone.is_(False)]
    return where + ([ImageRecord.chat_id == chat_id] if chat_id is not None else [])


async def photos_waiting(session: AsyncSession, model: str, chat_id: int | None = None) -> int:
    """Photos (of one chat, or all) that `model` cannot search until they are re-embedded with it."""
    return await session.scalar(select(func.count(ImageRecord.id)).where(*_waiting(model, chat_id))) or 0


async def next_waiting(
    session: AsyncSession, model: str, chat_id: int | None, after_id: int, limit: int = 100
) -> list[Waiting]:
    """The next `limit` waiting photos by id after `after_id`: one pass visits each photo once."""
    rows = await session.execute(
        select(ImageRecord.id, ImageRecord.chat_id, ImageRecord.file_id, ImageRecord.embedding_model)
        .where(*_waiting(model, chat_id), ImageRecord.id > after_id)
        .order_by(ImageRecord.id)
        .limit(limit)
    )
    return [Waiting(*row) for row in rows]


async def replace_embedding(session: AsyncSession, photo: Waiting, vector: np.ndarray, model: str) -> bool:
    """Store the photo's vector from `model`; False when it changed meanwhile (deleted, or another run
    got there first), in which case nothing is written. Caption and tags stay as first seen."""
    result = await session.execute(
        update(ImageRecord)
        .where(ImageRecord.id == photo.id, ImageRecord.embedding_model == photo.embedding_model)
        .values(embedding=encode_embedding(vector), embedding_model=model)
    )
    return bool(changed_rows(result))


async def mark_gone(session: AsyncSession, photo: Waiting) -> None:
    """Telegram no longer has this photo's file: no run asks for it again."""
    await session.execute(update(ImageRecord).where(ImageRecord.id == photo.id).values(file_gone=True))


async def start_run(session: AsyncSession, model: str, chat_id: int | None) -> int:
    """Announce a run (and clear the rows of runs that died without ending); returns its id."""
    await session.execute(delete(ReindexRun).where(ReindexRun.beat_at < _dead_before()))
    run = ReindexRun(embedding_model=model, chat_id=chat_id)
    session.add(run)
    await session.flush()
    return run.id


async def beat(session: AsyncSession, run_id: int) -> None:
    await session.execute(update(ReindexRun).where(ReindexRun.id == run_id).values(beat_at=utcnow()))


async def end_run(session: AsyncSession, run_id: int) -> None:
    await session.execute(delete(ReindexRun).where(ReindexRun.id == run_id))


async def reindex_running(session: AsyncSession, model: str, chat_id: int) -> bool:
    """Whether a live run is re-embedding this chat's photos with `model` (a run for another CLIP
    would not make them searchable here)."""
    found = await session.scalar(
        select(ReindexRun.id)
        .where(
            ReindexRun.embedding_model == model,
            ReindexRun.beat_at >= _dead_before(),
            or_(ReindexRun.chat_id.is_(None), ReindexRun.chat_id == chat_id),
        )
        .limit(1)
    )
    return found is not None


def _dead_before() -> datetime:
    return datetime.now(UTC) - timedelta(seconds=ALIVE_S)
