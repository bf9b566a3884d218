"""Writing the corpus, the same SQL on both backends: a batch of documents in one transaction, a
document's fields alone, deletion, and the pages `dtrag reindex` walks (new vectors, new lexical
forms). Each backend adds how it stores a vector and keeps its lexical index (`index_chunks`,
`drop_postings`).

Every write bumps the corpus generation in its own transaction, so a cached search never outlives
the corpus it was computed on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sqlalchemy import bindparam, delete, func, insert, or_, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from tenacity import retry, retry_if_exception_type, stop_after_attempt

from apps.core.corpus_state import bump_generation, claim_lexical_analyzer, lexical_analyzer
from apps.core.db import write_transaction
from apps.core.models import Chunk, Collection, Document, DocumentGroup, Embedding, new_id, utcnow
from apps.core.visibility import Visibility


@dataclass(frozen=True)
class EmbeddingSpace:
    """Vectors are comparable only within one model and dimension."""

    model: str
    dim: int


@dataclass(frozen=True)
class CorpusIdentity:
    """What the stored corpus was built with; None where nothing is stored yet."""

    space: EmbeddingSpace | None
    analyzer: str | None


@dataclass(frozen=True)
class StoredDocument:
    """What a new version of a document is compared with."""

    id: str
    checksum: str
    chunk_count: int
    metadata: dict[str, Any]
    content_type: str
    groups: frozenset[str] = frozenset()


@dataclass(frozen=True)
class StoredChunk:
    id: int
    text: str
    title: str


@dataclass(frozen=True)
class ChunkWrite:
    text: str
    token_count: int
    tokens: tuple[str, ...]  # the analysed lexical form
    language: str


@dataclass
class DocumentWrite:
    """One version of a document to store in collection `collection_id`. `vectors` (one per chunk) may be
    left out when only fields outside the checksum (metadata, content type, access groups) changed: then
    nothing is re-embedded."""

    collection_id: int
    identity: str
    checksum: str
    title: str
    source_url: str | None
    content_type: str
    language: str
    taxonomy_path: str
    metadata: dict[str, Any]
    groups: tuple[str, ...] = ()
    chunks: list[ChunkWrite] = field(default_factory=list)
    vectors: np.ndarray | None = None


@dataclass(frozen=True)
class WriteOutcome:
    document_id: str | None
    identity: str
    # created | replaced (new text: new chunks and vectors) | updated (metadata or content type only)
    # | unchanged | stale (came without vectors, but the stored text is not this one's: embed it first)
    status: str
    chunks: int


# SQLite and asyncpg both cap bind parameters per statement.
_PAGE = 500
_STORED = select(
    Document.external_id, Document.id, Document.checksum, Document.chunk_count, Document.metadata_.label("meta"),
    Document.content_type,
).where(Document.collection_id == bindparam("collection"), Document.external_id.in_(bindparam("ids", expanding=True)))
_GROUPS = select(DocumentGroup.document_id, DocumentGroup.name).where(
    DocumentGroup.document_id.in_(bindparam("doc_ids", expanding=True)))


class SqlCorpus:
    engine: AsyncEngine

    def encode_vector(self, vector: np.ndarray) -> Any:
        raise NotImplementedError

    async def index_chunks(self, conn: AsyncConnection, chunks: Sequence[tuple[int, Sequence[str]]]) -> None:
        """Make freshly written lexical forms searchable, inside the caller's transaction."""
        raise NotImplementedError

    async def drop_postings(self, conn: AsyncConnection, chunk_ids: Sequence[int]) -> None:
        """Forget the lexical index entries of chunks about to get new lexical forms."""
        raise NotImplementedError

    async def collection_ids(self, names: set[str]) -> dict[str, int]:
        """The ids of the collections named that exist."""
        if not names:
            return {}
        async with self.engine.connect() as conn:
            rows = await conn.execute(select(Collection.name, Collection.id).where(Collection.name.in_(sorted(names))))
            return {r.name: r.id for r in rows}

    async def stored_documents(self, keys: set[tuple[int, str]], conn: AsyncConnection | None = None,
                               ) -> dict[tuple[int, str], StoredDocument]:
        """The stored versions of documents by (collection id, identity), with their access groups."""
        if conn is None:
            async with self.engine.connect() as own:
                return await self.stored_documents(keys, own)
        by_collection: dict[int, list[str]] = {}
        for collection_id, identity in sorted(keys):
            by_collection.setdefault(collection_id, []).append(identity)
        rows = []
        for collection_id, ids in by_collection.items():
            for start in range(0, len(ids), _PAGE):
                found = await conn.execute(_STORED, {"collection": collection_id, "ids": ids[start : start + _PAGE]})
                rows.extend((collection_id, r) for r in found)
        groups: dict[str, set[str]] = {}
        doc_ids = [r.id for _, r in rows]
        for start in range(0, len(doc_ids), _PAGE):
            for g in await conn.execute(_GROUPS, {"doc_ids": doc_ids[start : start + _PAGE]}):
                groups.setdefault(g.document_id, set()).add(g.name)
        return {(collection_id, r.external_id): StoredDocument(r.id, r.checksum, r.chunk_count, r.meta or {},
                                                                r.content_type, frozenset(groups.get(r.id, ())))
                for collection_id, r in rows}

    # A concurrent writer may insert the same identity between our look and our insert (PostgreSQL);
    # the retry looks again and then finds it stored.
    @retry(retry=retry_if_exception_type(IntegrityError), stop=stop_after_attempt(3), reraise=True)
    async def write_documents(self, documents: Sequence[DocumentWrite], space: EmbeddingSpace,
                              analyzer: str) -> list[WriteOutcome]:
        """One transaction: each document created, replaced (its old chunks, vectors and postings go
        with it), updated in its fields alone, or left as it is when the stored version is the same."""
        async with write_transaction(self.engine) as conn:
            stored = await self.stored_documents({(d.collection_id, d.identity) for d in documents}, conn)
            outcomes = [await self._write(conn, d, stored.get((d.collection_id, d.identity)), space)
                        for d in documents]
            if any(o.status in ("created", "replaced") for o in outcomes):
                await claim_lexical_analyzer(conn, analyzer)
            if any(o.status in ("created", "replaced", "updated") for o in outcomes):
                await bump_generation(conn)
        return outcomes

    async def _write(self, conn: AsyncConnection, d: DocumentWrite, old: StoredDocument | None,
                     space: EmbeddingSpace) -> WriteOutcome:
        groups = frozenset(d.groups)
        if old is not None and old.checksum == d.checksum:
            if (old.metadata, old.content_type, old.groups) == (d.metadata, d.content_type, groups):
                return WriteOutcome(old.id, d.identity, "unchanged", old.chunk_count)
            await conn.execute(update(Document).where(Document.id == old.id).values(
                metadata_=d.metadata, content_type=d.content_type, restricted=bool(groups), updated_at=utcnow()))
            await self._write_groups(conn, old.id, groups, replace=True)
            return WriteOutcome(old.id, d.identity, "updated", old.chunk_count)
        if d.vectors is None:
            return WriteOutcome(old.id if old else None, d.identity, "stale", 0)
        # `restricted` is written before the chunks' vectors: the SQLite vec0 mirror copies it from here.
        values = dict(title=d.title, source_url=d.source_url, content_type=d.content_type, checksum=d.checksum,
                      language=d.language, taxonomy_path=d.taxonomy_path, metadata_=d.metadata,
                      chunk_count=len(d.chunks), token_count=sum(c.token_count for c in d.chunks),
                      restricted=bool(groups), updated_at=utcnow())
        if old is not None:
            doc_id = old.id
            await conn.execute(delete(Chunk).where(Chunk.document_id == doc_id))
            await conn.execute(update(Document).where(Document.id == doc_id).values(**values))
        else:
            doc_id = new_id()
            await conn.execute(insert(Document).values(id=doc_id, collection_id=d.collection_id,
                                                       external_id=d.identity, created_at=utcnow(), **values))
        await self._write_groups(conn, doc_id, groups, replace=old is not None)
        await self._write_chunks(conn, doc_id, d, space)
        return WriteOutcome(doc_id, d.identity, "replaced" if old else "created", len(d.chunks))

    @staticmethod
    async def _write_groups(conn: AsyncConnection, doc_id: str, groups: frozenset[str], replace: bool) -> None:
        if replace:
            await conn.execute(delete(DocumentGroup).where(DocumentGroup.document_id == doc_id))
        if groups:
            await conn.execute(insert(DocumentGroup), [{"document_id": doc_id, "name": g} for g in sorted(groups)])

    async def _write_chunks(self, conn: AsyncConnection, doc_id: str, d: DocumentWrite,
                            space: EmbeddingSpace) -> None:
        assert d.vectors is not None and len(d.vectors) == len(d.chunks)
        rows = [dict(document_id=doc_id, ordinal=i, text=c.text, token_count=c.token_count,
                     lexical=" ".join(c.tokens), lexical_length=len(c.tokens), language=c.language)
                for i, c in enumerate(d.chunks)]
        result = await conn.execute(insert(Chunk).returning(Chunk.id, Chunk.ordinal, sort_by_parameter_order=True),
                                    rows)
        ids = [r.id for r in result]
        await conn.execute(insert(Embedding), [
            dict(chunk_id=cid, model=space.model, dim=space.dim, vector=self.encode_vector(v))
            for cid, v in zip(ids, d.vectors)])
        await self.index_chunks(conn, [(cid, c.tokens) for cid, c in zip(ids, d.chunks)])

    async def delete_document(self, document_id: str, visibility: Visibility) -> bool:
        """Only a document `visibility` allows (False for any other, as for none); chunks, vectors and
        postings go with it by cascade."""
        where, params, expanding = visibility.sql(self.engine.dialect.name)
        sql = "DELETE FROM documents WHERE id IN (SELECT d.id FROM documents d WHERE d.id = :doc_id" + (
            f" AND {where})" if where else ")")
        statement = text(sql).bindparams(*(bindparam(name, expanding=True) for name in expanding))
        async with write_transaction(self.engine) as conn:
            deleted = (await conn.execute(statement, {**params, "doc_id": document_id})).rowcount
            if deleted:
                await bump_generation(conn)
        return bool(deleted)

    async def corpus_identity(self) -> CorpusIdentity:
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(Embedding.model, Embedding.dim).limit(1))).first()
            analyzer = await lexical_analyzer(conn)
        return CorpusIdentity(EmbeddingSpace(row.model, row.dim) if row else None, analyzer)

    def _chunks(self, outside: EmbeddingSpace | None, *columns: Any) -> Any:
        """Chunks (with their document), or only those without a vector in `outside`'s space."""
        query = select(*columns).select_from(Chunk).join(Document, Document.id == Chunk.document_id)
        if outside is None:
            return query
        return query.outerjoin(Embedding, Embedding.chunk_id == Chunk.id).where(or_(
            Embedding.chunk_id.is_(None), Embedding.model != outside.model, Embedding.dim != outside.dim))

    async def count_chunks(self, outside: EmbeddingSpace | None = None) -> int:
        async with self.engine.connect() as conn:
            return int((await conn.execute(self._chunks(outside, func.count()))).scalar_one())

    async def chunk_page(self, after: int, limit: int, outside: EmbeddingSpace | None = None) -> list[StoredChunk]:
        """The next `limit` chunks by id after `after` (of those without a vector in `outside`'s space)."""
        query = self._chunks(outside, Chunk.id, Chunk.text, Document.title)
        async with self.engine.connect() as conn:
            rows = await conn.execute(query.where(Chunk.id > after).order_by(Chunk.id).limit(limit))
            return [StoredChunk(r.id, r.text, r.title) for r in rows]

    async def replace_embeddings(self, vectors: Sequence[tuple[int, np.ndarray]], space: EmbeddingSpace) -> None:
        async with write_transaction(self.engine) as conn:
            await conn.execute(delete(Embedding).where(Embedding.chunk_id.in_([cid for cid, _ in vectors])))
            await conn.execute(insert(Embedding), [
                dict(chunk_id=cid, model=space.model, dim=space.dim, vector=self.encode_vector(v))
                for cid, v in vectors])
            await bump_generation(conn)

    async def replace_lexical(self, chunks: Sequence[tuple[int, Sequence[str]]]) -> None:
        """Give existing chunks new lexical forms (another Korean analyser)."""
        async with write_transaction(self.engine) as conn:
            await conn.execute(update(Chunk).where(Chunk.id == bindparam("cid")).values(
                lexical=bindparam("new_lexical"), lexical_length=bindparam("new_length")),
                [{"cid": cid, "new_lexical": " ".join(tokens), "new_length": len(tokens)} for cid, tokens in chunks])
            await self.drop_postings(conn, [cid for cid, _ in chunks])
            await self.index_chunks(conn, chunks)

    async def set_lexical_analyzer(self, name: str) -> None:
        """Record that every chunk's lexical form is now `name`'s."""
        async with write_transaction(self.engine) as conn:
            await claim_lexical_analyzer(conn, name, force=True)
            await bump_generation(conn)
