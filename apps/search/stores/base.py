"""The store interface: what retrieval, ingestion and reindexing need from a backend.

Both legs return `(chunk_id, score)` pairs, best first, with higher scores better; filters restrict
results but never the corpus statistics (IDF and average length are over the whole index).

Every read of documents takes a `Visibility` (apps/core/visibility.py) as a required argument, with no
default: the legs, hydration and deletion apply it in the same SQL that reads, so no caller can leave
it out and nothing outside it leaves the database.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
from sqlalchemy import String, bindparam, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql.elements import TextClause

from apps.core.visibility import Visibility
from apps.search.stores.corpus import (
    CorpusIdentity,
    DocumentWrite,
    EmbeddingSpace,
    SqlCorpus,
    StoredChunk,
    StoredDocument,
    WriteOutcome,
)
from apps.search.types import ChunkRecord, LegHit, SearchFilters

_HYDRATE_SQL = (
    "SELECT c.id, c.document_id, c.text, d.title, d.source_url, d.taxonomy_path, d.external_id, d.language, "
    "col.name AS collection FROM chunks c JOIN documents d ON d.id = c.document_id "
    "JOIN collections col ON col.id = d.collection_id WHERE c.id IN :ids"
)


class Store(Protocol):
    backend: str
    engine: AsyncEngine

    # Reading, for retrieval: only what `visibility` allows.
    async def bm25(self, terms: list[str], k: int, filters: SearchFilters, visibility: Visibility) -> list[LegHit]: ...

    async def dense(self, vector: np.ndarray, model: str, k: int, filters: SearchFilters,
                    visibility: Visibility) -> list[LegHit]: ...

    async def hydrate(self, chunk_ids: Sequence[int], visibility: Visibility) -> dict[int, ChunkRecord]:
        """Text and document fields of the chunks that still exist (a chunk may be deleted meanwhile) and
        are visible."""
        ...

    # Writing, for ingestion and `dtrag reindex` (see `apps.search.stores.corpus`).
    async def collection_ids(self, names: set[str]) -> dict[str, int]: ...

    async def stored_documents(self, keys: set[tuple[int, str]]) -> dict[tuple[int, str], StoredDocument]: ...

    async def write_documents(self, documents: Sequence[DocumentWrite], space: EmbeddingSpace,
                              analyzer: str) -> list[WriteOutcome]:
        """One transaction for the batch: a reader sees a document's old version or its new one."""
        ...

    async def delete_document(self, document_id: str, visibility: Visibility) -> bool: ...

    async def corpus_identity(self) -> CorpusIdentity: ...

    async def ensure_vector_index(self, dim: int) -> None: ...

    async def count_chunks(self, outside: EmbeddingSpace | None = None) -> int: ...

    async def chunk_page(self, after: int, limit: int, outside: EmbeddingSpace | None = None,
                         ) -> list[StoredChunk]: ...

    async def replace_embeddings(self, vectors: Sequence[tuple[int, np.ndarray]], space: EmbeddingSpace,
                                 ) -> None: ...

    async def replace_lexical(self, chunks: Sequence[tuple[int, Sequence[str]]]) -> None: ...

    async def set_lexical_analyzer(self, name: str) -> None: ...

    async def close(self) -> None: ...


class SqlStore(SqlCorpus):
    """What both backends do the same way in plain SQL."""

    engine: AsyncEngine

    async def leg_visibility(self, conn: AsyncConnection, visibility: Visibility) -> Visibility:
        """What a search leg filters by: the access-group check only while some document carries groups
        (one lookup in a partial index), so a groupless key's search over a groupless corpus walks the
        plain index. Hydration applies the whole predicate again, so a document given groups meanwhile
        cannot slip through; it can only leave the leg one hit short."""
        if visibility.groups is None:
            return visibility
        flag = "restricted" if self.backend == "postgresql" else "restricted = 1"
        grouped = (await conn.execute(text(f"SELECT 1 FROM documents WHERE {flag} LIMIT 1"))).first()
        return visibility if grouped is not None else Visibility(visibility.collections, None, visibility.key_id)

    async def hydrate(self, chunk_ids: Sequence[int], visibility: Visibility) -> dict[int, ChunkRecord]:
        if not chunk_ids:
            return {}
        where, params, expanding = visibility.sql(self.backend)
        sql = _HYDRATE_SQL + (f" AND {where}" if where else "")
        async with self.engine.connect() as conn:
            rows = await conn.execute(bind(sql, ["ids", *expanding]), {**params, "ids": list(chunk_ids)})
            return {r.id: ChunkRecord(r.id, r.document_id, r.text, r.title, r.source_url, r.taxonomy_path,
                                      r.external_id, r.language, r.collection) for r in rows}


def _like_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def filter_clause(filters: SearchFilters, dialect: str, visibility: Visibility) -> tuple[str, dict[str, Any], list[str]]:
    """SQL conditions over `d` (documents) for the filters and what is visible: (sql, params, names of
    the expanding parameters). An empty sql means every document."""
    where, params, expanding = visibility.sql(dialect)
    parts: list[str] = [where] if where else []
    if filters.taxonomy_path:
        parts.append("(d.taxonomy_path = :f_tp OR d.taxonomy_path LIKE :f_tp_like ESCAPE '\\')")
        params["f_tp"] = filters.taxonomy_path
        params["f_tp_like"] = _like_escape(filters.taxonomy_path) + "/%"
    if filters.language:
        parts.append("d.language = :f_lang")
        params["f_lang"] = filters.language
    if filters.doc_ids is not None:
        parts.append("d.id IN :f_doc_ids")
        params["f_doc_ids"] = list(filters.doc_ids or ())
        expanding.append("f_doc_ids")
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


def bind(sql: str, expanding: Sequence[str]) -> TextClause:
    """`sql` with its list parameters expanded (`IN :name`); an empty list matches nothing."""
    return text(sql).bindparams(*(bindparam(name, expanding=True, type_=None if name == "ids" else String())
                                  for name in expanding))
