"""SQLite: BM25 by FTS5's `bm25()`, dense by sqlite-vec.

The FTS5 table is external-content over `chunks.lexical`, kept in sync by triggers from the
migration, so inserting or deleting (also by cascade) a chunk updates the lexical index in the same
transaction. Dense search over the whole corpus is a `vec0` k-nearest-neighbour scan (see
`vector_index`); filtered, it is an exact `vec_distance_cosine` over the filtered rows only, so a
selective filter never comes back short.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sqlalchemy import text
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from apps.core.db import write_transaction
from apps.search.stores.base import SqlStore, bind, filter_clause
from apps.search.stores.sqlite import vector_index
from apps.search.types import LegHit, SearchFilters


def _match_expression(terms: list[str]) -> str:
    # Terms are alphanumeric runs (see the analyser), so quoting makes each a literal FTS5 string.
    return " OR ".join(f'"{t}"' for t in terms)


class SQLiteStore(SqlStore):
    backend = "sqlite"

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    def encode_vector(self, vector: np.ndarray) -> bytes:
        return np.asarray(vector, dtype=np.float32).tobytes()

    async def index_chunks(self, conn: AsyncConnection, chunks: Sequence[tuple[int, Sequence[str]]]) -> None:
        return None  # triggers index `chunks.lexical`

    async def replace_lexical(self, conn: AsyncConnection, chunks: Sequence[tuple[int, Sequence[str]]]) -> None:
        await self._update_lexical(conn, chunks)  # the FTS5 update trigger re-indexes them

    async def ensure_vector_index(self, dim: int) -> None:
        async with write_transaction(self.engine) as conn:
            for statement in vector_index.ddl(dim):
                await conn.execute(text(statement))

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
        dim = int(len(vector))
        params = {"q": self.encode_vector(vector), "model": model, "k": k}
        async with self.engine.connect() as conn:
            if filters.empty:
                try:
                    rows = await conn.execute(text(
                        f"SELECT chunk_id, 1 - distance AS score FROM {vector_index.table_name(dim)} "
                        "WHERE embedding MATCH :q AND k = :k AND model = :model ORDER BY distance"
                    ), params)
                    return [LegHit(int(r.chunk_id), float(r.score)) for r in rows]
                except OperationalError as exc:
                    if "no such table" not in str(exc):
                        raise
                    await conn.rollback()  # no vec0 table for this dimension yet: scan exactly
            where, fparams, expanding = filter_clause(filters, self.backend)
            join = "" if filters.empty else (
                " JOIN chunks c ON c.id = e.chunk_id JOIN documents d ON d.id = c.document_id"
            )
            sql = (
                "SELECT e.chunk_id, 1 - vec_distance_cosine(e.vector, :q) AS score FROM embeddings e" + join
                + f" WHERE e.model = :model AND e.dim = {dim}" + (f" AND {where}" if where else "")
                + " ORDER BY score DESC, e.chunk_id LIMIT :k"
            )
            rows = await conn.execute(bind(sql, expanding), {**fparams, **params})
            return [LegHit(int(r.chunk_id), float(r.score)) for r in rows]

    async def close(self) -> None:
        return None  # everything runs on the engine's pool
