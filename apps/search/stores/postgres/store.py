"""PostgreSQL: BM25 computed in SQL over a postings table, dense by pgvector HNSW.

BM25 follows the formula FTS5's `bm25()` uses (Robertson IDF floored at 1e-6, TF saturation k1,
length normalisation b over analysed-token lengths), so both backends rank the same way by default;
here k1 and b come from settings.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from apps.search.stores.base import SqlStore, bind, filter_clause
from apps.search.types import LegHit, SearchFilters

_BM25_SQL = """
WITH p AS (SELECT CAST(:k1 AS float8) AS k1, CAST(:b AS float8) AS b),
-- Explicit casts: PostgreSQL would infer integer parameters from "1 - :b", and asyncpg would then
-- truncate b = 0.75 to 0 without a word. float8 throughout: numeric arithmetic per posting would
-- cost more than the rest of the query.
st AS (SELECT count(*)::float8 AS n, coalesce(avg(lexical_length)::float8, 1) AS avgdl FROM chunks),
-- Document frequency over the whole index, before any filter, as FTS5 does.
idf AS (
    SELECT t.term, greatest(ln((st.n - count(*) + 0.5) / (count(*) + 0.5)), 1e-6) AS idf
    FROM chunk_terms t CROSS JOIN st WHERE t.term = ANY(CAST(:terms AS text[])) GROUP BY t.term, st.n
)
SELECT t.chunk_id,
       sum(idf.idf * t.tf * (p.k1 + 1) / (t.tf + p.k1 * (1 - p.b + p.b * t.dl / st.avgdl))) AS score
FROM chunk_terms t
JOIN idf ON idf.term = t.term
{join}
CROSS JOIN st
CROSS JOIN p
{where}
GROUP BY t.chunk_id
ORDER BY score DESC, t.chunk_id
LIMIT :k
"""


def _vector_literal(vector: np.ndarray) -> str:
    return "[" + ",".join(f"{float(x):.7g}" for x in vector) + "]"


class PostgresStore(SqlStore):
    backend = "postgresql"

    def __init__(self, engine: AsyncEngine, k1: float, b: float, ef_search: int) -> None:
        self.engine = engine
        self._k1 = k1
        self._b = b
        self._ef_search = ef_search

    def encode_vector(self, vector: np.ndarray) -> np.ndarray:
        return np.asarray(vector, dtype=np.float32)  # the VECTOR column type renders it

    async def index_chunks(self, conn: AsyncConnection, chunks: Sequence[tuple[int, Sequence[str]]]) -> None:
        rows = [
            {"term": term, "chunk_id": chunk_id, "tf": tf, "dl": len(tokens)}
            for chunk_id, tokens in chunks
            for term, tf in Counter(tokens).items()
        ]
        if rows:
            await conn.execute(
                text("INSERT INTO chunk_terms (term, chunk_id, tf, dl) VALUES (:term, :chunk_id, :tf, :dl)"), rows
            )

    async def replace_lexical(self, conn: AsyncConnection, chunks: Sequence[tuple[int, Sequence[str]]]) -> None:
        await self._update_lexical(conn, chunks)
        await conn.execute(text("DELETE FROM chunk_terms WHERE chunk_id = ANY(CAST(:ids AS bigint[]))"),
                           {"ids": [cid for cid, _ in chunks]})
        await self.index_chunks(conn, chunks)

    async def ensure_vector_index(self, dim: int) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(
                text(
                    f"CREATE INDEX IF NOT EXISTS ix_embeddings_hnsw_{int(dim)} ON embeddings USING hnsw "
                    f"((vector::vector({int(dim)})) vector_cosine_ops) WHERE dim = {int(dim)}"
                )
            )

    async def bm25(self, terms: list[str], k: int, filters: SearchFilters) -> list[LegHit]:
        if not terms:
            return []
        where, params, expanding = filter_clause(filters, self.backend)
        sql = _BM25_SQL.format(
            join="" if filters.empty else "JOIN chunks c ON c.id = t.chunk_id JOIN documents d ON d.id = c.document_id",
            where=f"WHERE {where}" if where else "",
        )
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                bind(sql, expanding), {**params, "terms": terms, "k1": self._k1, "b": self._b, "k": k}
            )
            return [LegHit(int(r.chunk_id), float(r.score)) for r in rows]

    async def dense(self, vector: np.ndarray, model: str, k: int, filters: SearchFilters) -> list[LegHit]:
        dim = int(len(vector))
        cast = f"(e.vector::vector({dim}))"
        where, params, expanding = filter_clause(filters, self.backend)
        if filters.empty:
            # Exactly the partial expression index's shape, so the planner walks the HNSW graph.
            sql = (
                f"SELECT e.chunk_id, 1 - ({cast} <=> CAST(:q AS vector({dim}))) AS score FROM embeddings e "
                f"WHERE e.dim = {dim} AND e.model = :model ORDER BY {cast} <=> CAST(:q AS vector({dim})) LIMIT :k"
            )
        else:
            # Filtered: exact search over the filtered rows (an HNSW scan filtered afterwards can come back
            # short); OFFSET 0 keeps the subquery from being flattened into an index scan.
            sql = (
                f"SELECT s.chunk_id, 1 - ((s.vector::vector({dim})) <=> CAST(:q AS vector({dim}))) AS score FROM ("
                "SELECT e.chunk_id, e.vector FROM embeddings e JOIN chunks c ON c.id = e.chunk_id "
                f"JOIN documents d ON d.id = c.document_id WHERE e.dim = {dim} AND e.model = :model AND {where} "
                f"OFFSET 0) s ORDER BY score DESC LIMIT :k"
            )
        async with self.engine.connect() as conn:
            async with conn.begin():
                await conn.execute(
                    text("SELECT set_config('hnsw.ef_search', :ef, true)"),
                    {"ef": str(max(self._ef_search, k))},
                )
                rows = await conn.execute(
                    bind(sql, expanding), {**params, "q": _vector_literal(vector), "model": model, "k": k}
                )
                return [LegHit(int(r.chunk_id), float(r.score)) for r in rows]

    async def close(self) -> None:
        return None  # everything runs on the engine's pool
