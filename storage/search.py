"""Find a chat's photos from a phrase: CLIP text vector against stored image vectors.

Brute force is exact and, with the vectors held in memory, fast: 100k photos of
512 floats is one 200 MB matrix-vector product. The index keeps each chat's
matrix and only fetches rows added since its last look, so a query costs one
indexed SQL aggregate plus the product. Rows join a chat's matrix out of id order
too (`clipchat db reindex` re-embeds old photos), which the sum of ids notices.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from .models import ImageRecord, as_utc, decode_embeddings

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass
class _ChatVectors:
    ids: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    matrix: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=np.float32))
    stored_at: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # microseconds since 1970

    @property
    def last_id(self) -> int:
        return int(self.ids[-1]) if len(self.ids) else 0

    def same_rows(self, count: int, newest: int | None, id_sum: int | None) -> bool:
        return (len(self.ids), self.last_id, int(self.ids.sum())) == (count, newest or 0, int(id_sum or 0))


class EmbeddingIndex:
    """Per (chat, model) image vectors in memory, kept in step with the database."""

    def __init__(self, max_chats: int = 256) -> None:
        self._chats: OrderedDict[tuple[int, str], _ChatVectors] = OrderedDict()
        self._max_chats = max_chats

    async def search(
        self,
        session: AsyncSession,
        chat_id: int,
        model: str,
        query: np.ndarray,
        k: int = 5,
        since: datetime | None = None,
    ) -> list[tuple[int, float]]:
        """Image ids and cosine similarities of the `k` best matches, best first; with `since`, only among
        the photos stored from then on."""
        vectors = await self._fresh(session, chat_id, model)
        if not len(vectors.ids):
            return []
        scores = vectors.matrix @ np.asarray(query, dtype=np.float32)
        if since is not None:
            scores = np.where(vectors.stored_at >= _microseconds(since), scores, -np.inf)
        k = min(k, int(np.isfinite(scores).sum()))
        if not k:
            return []
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top])]
        return [(int(vectors.ids[i]), float(scores[i])) for i in top]

    async def _fresh(self, session: AsyncSession, chat_id: int, model: str) -> _ChatVectors:
        key = (chat_id, model)
        where = (ImageRecord.chat_id == chat_id, ImageRecord.embedding_model == model)
        count, newest, id_sum = (
            await session.execute(
                select(func.count(ImageRecord.id), func.max(ImageRecord.id), func.sum(ImageRecord.id)).where(*where)
            )
        ).one()
        vectors = self._chats.get(key)
        if vectors is not None and vectors.same_rows(count, newest, id_sum):
            self._chats.move_to_end(key)
            return vectors
        incremental = vectors is not None and _only_appended(vectors, count, newest)
        if vectors is None or not incremental:
            vectors = _ChatVectors()  # first look, or something was deleted (retention, forget): reload
        rows = (
            await session.execute(
                select(ImageRecord.id, ImageRecord.embedding, ImageRecord.created_at)
                .where(*where, ImageRecord.id > vectors.last_id)
                .order_by(ImageRecord.id)
            )
        ).all()
        if rows:
            fresh = decode_embeddings([row.embedding for row in rows])
            vectors.ids = np.concatenate([vectors.ids, np.array([row.id for row in rows], dtype=np.int64)])
            vectors.matrix = fresh if not vectors.matrix.size else np.concatenate([vectors.matrix, fresh])
            stored_at = np.array([_microseconds(row.created_at) for row in rows], dtype=np.int64)
            vectors.stored_at = np.concatenate([vectors.stored_at, stored_at])
        if incremental and not vectors.same_rows(count, newest, id_sum):  # rows went or came below: reload once
            self._chats.pop(key, None)
            return await self._fresh(session, chat_id, model)
        # After a full reload a mismatch only means rows arrived meanwhile; the next query picks them up.
        self._chats[key] = vectors
        self._chats.move_to_end(key)
        if len(self._chats) > self._max_chats:
            self._chats.popitem(last=False)
        return vectors


def _microseconds(moment: datetime) -> int:
    """A stored time as whole microseconds since 1970 (SQLite hands times back without their zone: UTC)."""
    return (as_utc(moment) - EPOCH) // timedelta(microseconds=1)


def _only_appended(vectors: _ChatVectors, count: int, newest: int | None) -> bool:
    return newest is not None and newest >= vectors.last_id and count >= len(vectors.ids)


async def search_images(
    session: AsyncSession,
    index: EmbeddingIndex,
    chat_id: int,
    model: str,
    query: np.ndarray,
    k: int = 5,
    since: datetime | None = None,
) -> list[tuple[ImageRecord, float]]:
    """The chat's `k` photos closest to a (D,) normalised CLIP text vector, with their cosines; with `since`,
    only photos stored from then on (a group's history from before someone was there stays theirs)."""
    hits = await index.search(session, chat_id, model, query, k, since)
    if not hits:
        return []
    records = {
        r.id: r for r in await session.scalars(select(ImageRecord).where(ImageRecord.id.in_([i for i, _ in hits])))
    }
    return [(records[i], score) for i, score in hits if i in records]
