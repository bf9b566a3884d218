"""SQLite: BM25 by FTS5's `bm25()`, dense by sqlite-vec.

The FTS5 table is external-content over `chunks.lexical`, kept in sync by triggers from the
migration, so inserting or deleting (also by cascade) a chunk updates the lexical index in the same
transaction. Dense search without filters is a `vec0` k-nearest-neighbour scan (see `vector_index`)
over the partitions of the collections the viewer may see, leaving documents with access groups out
while it runs; those the viewer's groups open are few and scanned exactly beside it. With filters it is
an exact `vec_distance_cosine` over the filtered rows only, so a selective filter never comes back short.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sqlalchemy import text
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from apps.core.db import write_transaction
from apps.core.visibility import Visibility
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
        return None  # triggers index `chunks.lexical` as it is written

    async def drop_postings(self, conn: AsyncConnection, chunk_ids: Sequence[int]) -> None:
        return None  # the FTS5 update trigger re-indexes an updated `chunks.lexical`

    async def ensure_vector_index(self, dim: int) -> None:
        async with write_transaction(self.engine) as conn:
            for statement in vector_index.ddl(dim):
                await conn.execute(text(statement))

    async def bm25(self, terms: list[str], k: int, filters: SearchFilters, visibility: Visibility) -> list[LegHit]:
        if not terms:
            return []
        async with self.engine.connect() as conn:
            where, params, expanding = filter_clause(filters, self.backend, await self.leg_visibility(conn, visibility))
            join = " JOIN chunks c ON c.id = f.rowid JOIN documents d ON d.id = c.document_id" if where else ""
            sql = (
                "SELECT f.rowid AS chunk_id, -bm25(chunks_fts) AS score FROM chunks_fts f" + join
                + " WHERE chunks_fts MATCH :match" + (f" AND {where}" if where else "")
                + " ORDER BY bm25(chunks_fts) LIMIT :k"
            )
            rows = await conn.execute(bind(sql, expanding), {**params, "match": _match_expression(terms), "k": k})
            return [LegHit(int(r.chunk_id), float(r.score)) for r in rows]

    async def dense(self, vector: np.ndarray, model: str, k: int, filters: SearchFilters,
                    visibility: Visibility) -> list[LegHit]:
        dim = int(len(vector))
        params = {"q": self.encode_vector(vector), "model": model, "k": k}
        async with self.engine.connect() as conn:
            visibility = await self.leg_visibility(conn, visibility)
            if filters.empty:
                try:
                    return await self._nearest(conn, dim, params, visibility)
                except OperationalError as exc:
                    if "no such table" not in str(exc):
                        raise
                    await conn.rollback()  # no vec0 table for this dimension yet: scan exactly
            return await self._exact(conn, dim, params, filters, visibility)

    async def _nearest(self, conn: AsyncConnection, dim: int, params: dict[str, Any],
                       visibility: Visibility) -> list[LegHit]:
        """The vec0 scan: one partition per visible collection (an IN over a partition key scans each for
        its k best; the best k of those are the answer), groupless documents only for a groups-bound viewer,
        and beside it the exact scan of the documents that viewer's groups open."""
        where = ["embedding MATCH :q", "k = :k", "model = :model"]
        if visibility.collections is not None:
            ids = (await conn.execute(bind("SELECT id FROM collections WHERE name IN :names", ["names"]),
                                      {"names": sorted(visibility.collections)})).scalars().all()
            if not ids:
                return []
            where.append(f"collection_id IN ({', '.join(str(int(i)) for i in ids)})")
        if visibility.groups is not None:
            where.append("restricted = 0")
        rows = await conn.execute(text(
            f"SELECT chunk_id, 1 - distance AS score FROM {vector_index.table_name(dim)} WHERE {' AND '.join(where)}"
        ), params)  # (vec0 takes k or a LIMIT, not both: the best k of the partitions' are picked here)
        hits = [LegHit(int(r.chunk_id), float(r.score)) for r in rows]
        if visibility.groups:
            hits += await self._exact(conn, dim, params, SearchFilters(), visibility, restricted_only=True)
        return sorted(hits, key=lambda h: (-h.score, h.chunk_id))[: params["k"]]

    async def _exact(self, conn: AsyncConnection, dim: int, params: dict[str, Any], filters: SearchFilters,
                     visibility: Visibility, restricted_only: bool = False) -> list[LegHit]:
        where, fparams, expanding = filter_clause(filters, self.backend, visibility)
        if restricted_only:
            where = " AND ".join(w for w in ("d.restricted = 1", where) if w)
        join = " JOIN chunks c ON c.id = e.chunk_id JOIN documents d ON d.id = c.document_id" if where else ""
        sql = (
            "SELECT e.chunk_id, 1 - vec_distance_cosine(e.vector, :q) AS score FROM embeddings e" + join
            + f" WHERE e.model = :model AND e.dim = {dim}" + (f" AND {where}" if where else "")
            + " ORDER BY score DESC, e.chunk_id LIMIT :k"
        )
        rows = await conn.execute(bind(sql, expanding), {**fparams, **params})
        return [LegHit(int(r.chunk_id), float(r.score)) for r in rows]

    async def close(self) -> None:
        return None  # everything runs on the engine's pool
