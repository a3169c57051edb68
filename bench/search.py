"""Search latency for one chat holding 10k and 100k photos (512-d CLIP vectors, SQLite by default).

    python -m bench.search [--url DATABASE_URL] [--sizes 10000 100000] [--queries 50]

Prints, per size: the first query (loads the chat's vectors), warm queries through the
EmbeddingIndex, and the baseline of reading every vector from SQL on each query, with
the ratio between the two measured in this same run.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from sqlalchemy import insert, select

from storage import (
    EmbeddingIndex,
    ImageRecord,
    connect_database,
    decode_embeddings,
    encode_embedding,
    make_sessionmaker,
    upgrade,
)
from storage.context import ensure_chat

MODEL = "bench-clip"
DIM = 512


async def fill(sessions, chat_id: int, count: int, rng: np.random.Generator) -> None:
    async with sessions() as session:
        await ensure_chat(session, chat_id, "supergroup")
        for start in range(0, count, 5000):
            vectors = rng.normal(size=(min(5000, count - start), DIM)).astype(np.float32)
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
            await session.execute(
                insert(ImageRecord),
                [
                    {
                        "chat_id": chat_id,
                        "sender_id": None,
                        "message_id": start + i,
                        "file_id": f"f{start + i}",
                        "file_unique_id": f"u{start + i}",
                        "caption": "",
                        "tags": [],
                        "embedding": encode_embedding(v),
                        "embedding_model": MODEL,
                    }
                    for i, v in enumerate(vectors)
                ],
            )
        await session.commit()


async def naive_search(session, chat_id: int, query: np.ndarray) -> int:
    rows = (
        await session.execute(
            select(ImageRecord.id, ImageRecord.embedding).where(
                ImageRecord.chat_id == chat_id, ImageRecord.embedding_model == MODEL
            )
        )
    ).all()
    scores = decode_embeddings([r.embedding for r in rows]) @ query
    return int(rows[int(np.argmax(scores))].id)


async def measure(url: str, sizes: list[int], queries: int) -> None:
    engine = connect_database(url)
    await upgrade(engine)
    sessions = make_sessionmaker(engine)
    rng = np.random.default_rng(0)
    print(f"{'images':>8} {'first query':>12} {'warm p50':>10} {'warm p95':>10} {'reload p50':>11} {'speed-up':>9}")
    for chat_id, size in enumerate(sizes, start=1):
        await fill(sessions, chat_id, size, rng)
        index = EmbeddingIndex()
        probes = rng.normal(size=(queries, DIM)).astype(np.float32)
        async with sessions() as session:
            started = time.perf_counter()
            await index.search(session, chat_id, MODEL, probes[0], k=5)
            first = time.perf_counter() - started
            warm, naive = [], []
            for probe in probes:
                started = time.perf_counter()
                [(_best, _)] = await index.search(session, chat_id, MODEL, probe, k=1)
                warm.append(time.perf_counter() - started)
            for probe in probes[: max(3, queries // 10)]:
                started = time.perf_counter()
                assert await naive_search(session, chat_id, probe) is not None
                naive.append(time.perf_counter() - started)
        p50, p95 = statistics.median(warm), float(np.percentile(warm, 95))
        reload = statistics.median(naive)
        print(
            f"{size:>8} {first * 1000:>10.1f}ms {p50 * 1000:>8.2f}ms {p95 * 1000:>8.2f}ms "
            f"{reload * 1000:>9.1f}ms {reload / p50:>8.0f}x"
        )
    await engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.search")
    parser.add_argument("--url", help="database URL (default: a temporary SQLite file)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--queries", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        url = args.url or f"sqlite+aiosqlite:///{Path(folder) / 'bench.db'}"
        asyncio.run(measure(url, args.sizes, args.queries))


if __name__ == "__main__":
    main()
