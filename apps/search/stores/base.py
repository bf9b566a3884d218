"""The store interface: what retrieval and ingestion need from a backend.

Both legs return `(chunk_id, score)` pairs, best first, with higher scores better; filters restrict
results but never the corpus statistics (IDF and average length are over the whole index).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
from sqlalchemy import String, bindparam, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql.elements import TextClause

from apps.search.types import ChunkRecord, LegHit, SearchFilters

_HYDRATE_SQL = text(
    "SELECT c.id, c.document_id, c.text, d.title, d.source_url, d.taxonomy_path, d.external_id, d.language "
    "FROM chunks c JOIN documents d ON d.id = c.document_id WHERE c.id IN :ids"
).bindparams(bindparam("ids", expanding=True))


class Store(Protocol):
    backend: str
    engine: AsyncEngine

    def encode_vector(self, vector: np.ndarray) -> Any: ...

    async def index_chunks(self, conn: AsyncConnection, chunks: Sequence[tuple[int, Sequence[str]]]) -> None:
        """Make freshly inserted chunks searchable lexically, inside the caller's transaction."""
        ...

    async def replace_lexical(self, conn: AsyncConnection, chunks: Sequence[tuple[int, Sequence[str]]]) -> None:
        """Give existing chunks new analysed tokens (another Korean analyser), inside the caller's transaction."""
        ...

    async def ensure_vector_index(self, dim: int) -> None: ...

    async def bm25(self, terms: list[str], k: int, filters: SearchFilters) -> list[LegHit]: ...

    async def dense(self, vector: np.ndarray, model: str, k: int, filters: SearchFilters) -> list[LegHit]: ...

    async def hydrate(self, chunk_ids: Sequence[int]) -> dict[int, ChunkRecord]:
        """Text and document fields of the chunks that still exist (a chunk may be deleted meanwhile)."""
        ...

    async def close(self) -> None: ...


class SqlStore:
    """What both backends do the same way in plain SQL."""

    engine: AsyncEngine

    async def _update_lexical(self, conn: AsyncConnection, chunks: Sequence[tuple[int, Sequence[str]]]) -> None:
        await conn.execute(text("UPDATE chunks SET lexical = :lexical, lexical_length = :n WHERE id = :id"),
                           [{"id": cid, "lexical": " ".join(tokens), "n": len(tokens)} for cid, tokens in chunks])

    async def hydrate(self, chunk_ids: Sequence[int]) -> dict[int, ChunkRecord]:
        if not chunk_ids:
            return {}
        async with self.engine.connect() as conn:
            rows = await conn.execute(_HYDRATE_SQL, {"ids": list(chunk_ids)})
            return {r.id: ChunkRecord(r.id, r.document_id, r.text, r.title, r.source_url, r.taxonomy_path,
                                      r.external_id, r.language) for r in rows}


def _like_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def filter_clause(filters: SearchFilters, dialect: str) -> tuple[str, dict[str, Any], bool]:
    """SQL conditions over `d` (documents) for the filters: (sql, params, uses doc_ids list)."""
    parts: list[str] = []
    params: dict[str, Any] = {}
    if filters.taxonomy_path:
        parts.append("(d.taxonomy_path = :f_tp OR d.taxonomy_path LIKE :f_tp_like ESCAPE '\\')")
        params["f_tp"] = filters.taxonomy_path
        params["f_tp_like"] = _like_escape(filters.taxonomy_path) + "/%"
    if filters.language:
        parts.append("d.language = :f_lang")
        params["f_lang"] = filters.language
    expanding = filters.doc_ids is not None
    if expanding:
        parts.append("d.id IN :f_doc_ids")
        params["f_doc_ids"] = list(filters.doc_ids or ())
    if filters.metadata:
        if dialect == "postgresql":
            parts.append("d.metadata @> CAST(:f_meta AS jsonb)")
            params["f_meta"] = json.dumps(filters.metadata)
        else:
            for i, (key, value) in enumerate(sorted(filters.metadata.items())):
                # json_extract yields SQL values: JSON true/false become 1/0, objects become JSON text.
                if isinstance(value, bool):
                    value = int(value)
                elif isinstance(value, (dict, list)):
                    value = json.dumps(value, separators=(",", ":"))
                path = '$."' + key.replace('"', '\\"') + '"'
                parts.append(f"json_extract(d.metadata, :f_mk{i}) = :f_mv{i}")
                params[f"f_mk{i}"] = path
                params[f"f_mv{i}"] = value
    return " AND ".join(parts), params, expanding


def bind(sql: str, expanding_doc_ids: bool) -> TextClause:
    clause = text(sql)
    return clause.bindparams(bindparam("f_doc_ids", expanding=True, type_=String())) if expanding_doc_ids else clause
