"""PostgreSQL: BM25 computed in SQL over a postings table, dense by pgvector HNSW.

BM25 follows the formula FTS5's `bm25()` uses (Robertson IDF floored at 1e-6, TF saturation k1,
length normalisation b over analysed-token lengths), so both backends rank the same way by default;
here k1 and b come from settings.

A dense search that may see everything walks the HNSW graph. One restricted by what it may see or by
filters must not come back short, which an HNSW scan filtered afterwards can (pgvector 0.6 has no
iterative scans): a scope of up to DENSE_EXACT_MAX_CHUNKS chunks is scanned exactly; a larger one walks
the graph for enough neighbours that the scope's share of them fills k, and scans exactly when it
does not.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
from cachetools import TTLCache
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from apps.core.visibility import Visibility
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


# pgvector's largest hnsw.ef_search: a walk deeper than it cannot return more neighbours.
_MAX_WALK = 1000


def _vector_literal(vector: np.ndarray) -> str:
    return "[" + ",".join(f"{float(x):.7g}" for x in vector) + "]"


class PostgresStore(SqlStore):
    backend = "postgresql"

    def __init__(self, engine: AsyncEngine, k1: float, b: float, ef_search: int, exact_max_chunks: int = 20_000,
                 ) -> None:
        self.engine = engine
        self._k1 = k1
        self._b = b
        self._ef_search = ef_search
        self._exact_max = exact_max_chunks
        self._scope_sizes: TTLCache[tuple[str, str], tuple[int, float]] = TTLCache(maxsize=1024, ttl=10)

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

    async def drop_postings(self, conn: AsyncConnection, chunk_ids: Sequence[int]) -> None:
        await conn.execute(text("DELETE FROM chunk_terms WHERE chunk_id = ANY(CAST(:ids AS bigint[]))"),
                           {"ids": list(chunk_ids)})

    async def ensure_vector_index(self, dim: int) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(
                text(
                    f"CREATE INDEX IF NOT EXISTS ix_embeddings_hnsw_{int(dim)} ON embeddings USING hnsw "
                    f"((vector::vector({int(dim)})) vector_cosine_ops) WHERE dim = {int(dim)}"
                )
            )

    async def bm25(self, terms: list[str], k: int, filters: SearchFilters, visibility: Visibility) -> list[LegHit]:
        if not terms:
            return []
        async with self.engine.connect() as conn:
            where, params, expanding = filter_clause(filters, self.backend, await self.leg_visibility(conn, visibility))
            sql = _BM25_SQL.format(
                join="JOIN chunks c ON c.id = t.chunk_id JOIN documents d ON d.id = c.document_id" if where else "",
                where=f"WHERE {where}" if where else "",
            )
            rows = await conn.execute(
                bind(sql, expanding), {**params, "terms": terms, "k1": self._k1, "b": self._b, "k": k}
            )
            return [LegHit(int(r.chunk_id), float(r.score)) for r in rows]

    async def dense(self, vector: np.ndarray, model: str, k: int, filters: SearchFilters,
                    visibility: Visibility) -> list[LegHit]:
        dim = int(len(vector))
        cast = f"(e.vector::vector({dim}))"
        q = f"CAST(:q AS vector({dim}))"
        # Exactly the partial expression index's shape, so the planner walks the HNSW graph.
        graph = (f"SELECT e.chunk_id, {cast} <=> {q} AS distance FROM embeddings e "
                 f"WHERE e.dim = {dim} AND e.model = :model ORDER BY {cast} <=> {q} LIMIT :depth")
        async with self.engine.connect() as conn:
            async with conn.begin():
                where, params, expanding = filter_clause(filters, self.backend,
                                                         await self.leg_visibility(conn, visibility))
                values = {**params, "q": _vector_literal(vector), "model": model, "k": k}
                if not where:
                    return await self._walk(conn, f"SELECT chunk_id, 1 - distance AS score FROM ({graph}) g "
                                                  "ORDER BY distance, chunk_id", {**values, "depth": k}, k)
                depth = await self._depth(conn, dim, where, params, expanding, k)
                if depth is not None:
                    hits = await self._walk(conn, f"SELECT g.chunk_id, 1 - g.distance AS score FROM ({graph}) g "
                                                  "JOIN chunks c ON c.id = g.chunk_id JOIN documents d ON "
                                                  f"d.id = c.document_id WHERE {where} ORDER BY g.distance, "
                                                  "g.chunk_id LIMIT :k", {**values, "depth": depth}, depth,
                                            expanding)
                    if len(hits) >= k:
                        return hits
                # OFFSET 0 keeps the subquery from being flattened into an index scan.
                exact = (f"SELECT s.chunk_id, 1 - ((s.vector::vector({dim})) <=> {q}) AS score FROM ("
                         "SELECT e.chunk_id, e.vector FROM embeddings e JOIN chunks c ON c.id = e.chunk_id "
                         f"JOIN documents d ON d.id = c.document_id WHERE e.dim = {dim} AND e.model = :model "
                         f"AND {where} OFFSET 0) s ORDER BY score DESC, s.chunk_id LIMIT :k")
                rows = await conn.execute(bind(exact, expanding), values)
                return [LegHit(int(r.chunk_id), float(r.score)) for r in rows]

    async def _depth(self, conn: AsyncConnection, dim: int, where: str, params: dict[str, Any],
                     expanding: list[str], k: int) -> int | None:
        """How many graph neighbours a restricted search walks for k of its own (None: scan the scope
        exactly instead: it is small, or so small a share that the walk would be longer than the scan).
        The scope is counted (an index on the collection serves it) and the count reused for a few seconds:
        it only picks the plan, and a walk that comes back short falls back to the exact scan anyway. The
        whole is the planner's estimate."""
        key = (where, json.dumps(params, sort_keys=True, default=str))
        sizes = self._scope_sizes.get(key)
        if sizes is None:
            scope = int((await conn.execute(bind(f"SELECT coalesce(sum(d.chunk_count), 0) FROM documents d "
                                                 f"WHERE {where}", expanding), params)).scalar_one())
            total = 0.0
            if scope > self._exact_max:
                total = float((await conn.execute(text(
                    "SELECT greatest(reltuples, 0) FROM pg_class WHERE oid = 'embeddings'::regclass"))).scalar_one())
                if total <= 0:  # never analysed yet: count
                    total = float((await conn.execute(text(
                        f"SELECT count(*) FROM embeddings WHERE dim = {dim}"))).scalar_one())
            sizes = self._scope_sizes[key] = (scope, total)
        scope, total = sizes
        if scope <= self._exact_max:
            return None
        depth = math.ceil(2 * k * max(total, scope) / scope)  # twice the expected need: a scope clusters unevenly
        return depth if depth <= _MAX_WALK else None

    async def _walk(self, conn: AsyncConnection, sql: str, values: dict[str, Any], depth: int,
                    expanding: Sequence[str] = ()) -> list[LegHit]:
        await conn.execute(text("SELECT set_config('hnsw.ef_search', :ef, true)"),
                           {"ef": str(min(max(self._ef_search, depth), _MAX_WALK))})
        rows = await conn.execute(bind(sql, expanding), values)
        return [LegHit(int(r.chunk_id), float(r.score)) for r in rows]

    async def close(self) -> None:
        return None  # everything runs on the engine's pool
