"""SQLite: BM25 by FTS5's `bm25()`, dense by exact cosine in SQL (`dt_cosine`, see apps.core.db).

The FTS5 table is external-content over `chunks.lexical`, kept in sync by triggers from the
migration, so inserting or deleting (also by cascade) a chunk updates the lexical index in the same
transaction.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from apps.search.stores.base import bind, filter_clause
from apps.search.types import LegHit, SearchFilters


def _match_expression(terms: list[str]) -> str:
    # Terms are alphanumeric runs (see the analyser), so quoting makes each a literal FTS5 string.
    return " OR ".join(f'"{t}"' for t in terms)


class SQLiteStore:
    backend = "sqlite"

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    def encode_vector(self, vector: np.ndarray) -> bytes:
        return np.asarray(vector, dtype=np.float32).tobytes()

    async def index_chunks(self, conn: AsyncConnection, chunks: Sequence[tuple[int, Sequence[str]]]) -> None:
        return None  # triggers index `chunks.lexical`

    async def ensure_vector_index(self, dim: int) -> None:
        return None  # exact search needs no index

    async def bm25(self, terms: list[str], k: int, filters: SearchFilters) -> list[LegHit]:
        if not terms:
            return []
        where, params, expanding = filter_clause(filters, self.backend)
        join = "" if filters.empty else (
            " JOIN chunks c ON c.id = f.rowid JOIN documents d ON d.id = c.document_id"
        )
        sql = (
            "SELECT f.rowid AS chunk_id, -bm25(chunks_fts) AS score FROM chunks_fts f" + join
            + " WHERE chunks_fts MATCH :match" + (f" AND {where}" if where else "")
            + " ORDER BY bm25(chunks_fts) LIMIT :k"
        )
        async with self.engine.connect() as conn:
            rows = await conn.execute(bind(sql, expanding), {**params, "match": _match_expression(terms), "k": k})
            return [LegHit(int(r.chunk_id), float(r.score)) for r in rows]

    async def dense(self, vector: np.ndarray, model: str, k: int, filters: SearchFilters) -> list[LegHit]:
        where, params, expanding = filter_clause(filters, self.backend)
        join = "" if filters.empty else (
            " JOIN chunks c ON c.id = e.chunk_id JOIN documents d ON d.id = c.document_id"
        )
        sql = (
            "SELECT e.chunk_id, dt_cosine(e.vector, :q) AS score FROM embeddings e" + join
            + " WHERE e.model = :model" + (f" AND {where}" if where else "")
            + " ORDER BY score DESC LIMIT :k"
        )
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                bind(sql, expanding), {**params, "q": self.encode_vector(vector), "model": model, "k": k}
            )
            return [LegHit(int(r.chunk_id), float(r.score)) for r in rows]

    async def close(self) -> None:
        return None  # everything runs on the engine's pool
