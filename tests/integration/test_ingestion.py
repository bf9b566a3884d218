"""Ingestion on both backends: dedup, atomic replace, cascade delete, validation, embedding space."""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import delete, func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from apps.core.models import Chunk, Document, Embedding
from apps.ingestion.documents import SourceDocument
from apps.ingestion.errors import EmbeddingMismatchError, IngestError
from apps.runtime import Runtime
from tests.support.corpus import corpus


async def counts(rt: Runtime) -> dict[str, int]:
    lexical = "SELECT count(*) FROM chunk_terms" if rt.store.backend == "postgresql" else (
        "SELECT count(*) FROM chunks_fts_docsize"
    )
    async with rt.engine.connect() as conn:
        return {
            "documents": (await conn.execute(select(func.count()).select_from(Document))).scalar_one(),
            "chunks": (await conn.execute(select(func.count()).select_from(Chunk))).scalar_one(),
            "embeddings": (await conn.execute(select(func.count()).select_from(Embedding))).scalar_one(),
            "lexical": (await conn.execute(text(lexical))).scalar_one(),
        }


async def test_ingest_writes_documents_chunks_vectors_and_postings(runtime: Runtime) -> None:
    report = await runtime.ingestion.ingest(corpus())
    assert (report.documents, report.created, report.unchanged) == (6, 6, 0)
    assert report.chunks >= 6 and report.tokens > 0
    c = await counts(runtime)
    assert c["documents"] == 6 and c["chunks"] == c["embeddings"] == report.chunks and c["lexical"] > 0
    async with AsyncSession(runtime.engine) as session:
        doc = (await session.execute(select(Document).where(Document.external_id == "ko-ml"))).scalar_one()
        chunk = (await session.execute(select(Chunk).where(Chunk.document_id == doc.id))).scalars().first()
        emb = (await session.execute(select(Embedding.model, Embedding.dim))).first()
    assert doc.language == "ko" and doc.taxonomy_path == "tech/ai" and doc.metadata_ == {"team": "research", "year": 2024}
    assert "학습" in chunk.lexical.split() and chunk.lexical_length == len(chunk.lexical.split())
    assert emb.dim == 384 and "e5-small" in emb.model


async def test_reingesting_same_content_is_a_noop(runtime: Runtime) -> None:
    await runtime.ingestion.ingest(corpus())
    before = await counts(runtime)
    again = await runtime.ingestion.ingest(corpus())
    assert (again.created, again.replaced, again.unchanged, again.chunks) == (0, 0, 6, 0)
    assert await counts(runtime) == before
    # Without an external id the content is the identity.
    plain = [SourceDocument(text="A note without an id about sourdough bread.")]
    first = await runtime.ingestion.ingest(plain)
    second = await runtime.ingestion.ingest(plain)
    assert first.created == 1 and second.unchanged == 1
    assert first.outcomes[0].document_id == second.outcomes[0].document_id


async def test_changed_content_replaces_chunks_atomically(runtime: Runtime) -> None:
    await runtime.ingestion.ingest(corpus())
    old = await runtime.search.search("sunlight skin", top_k=1, strategy="bm25")
    assert old.hits[0].external_id == "bio"
    changed = SourceDocument(external_id="bio", title="Vitamin D", text="Vitamin D is made from cholesterol in the liver.")
    report = await runtime.ingestion.ingest([changed])
    assert report.replaced == 1
    assert report.outcomes[0].document_id == old.hits[0].doc_id  # same document, new chunks
    assert (await runtime.search.search("sunlight skin", top_k=5, strategy="bm25")).hits == []
    new = await runtime.search.search("cholesterol liver", top_k=1, strategy="bm25")
    assert new.hits[0].doc_id == old.hits[0].doc_id and new.hits[0].chunk_id != old.hits[0].chunk_id
    c = await counts(runtime)
    assert c["documents"] == 6 and c["chunks"] == c["embeddings"]


async def test_failed_write_leaves_the_old_version(runtime: Runtime, monkeypatch) -> None:
    await runtime.ingestion.ingest(corpus())
    before = await counts(runtime)

    async def broken(conn, chunks):
        raise RuntimeError("disk full")

    monkeypatch.setattr(runtime.store, "index_chunks", broken)
    changed = SourceDocument(external_id="bio", title="Vitamin D", text="Completely different text about rockets.")
    with pytest.raises(RuntimeError, match="disk full"):
        await runtime.ingestion.ingest([changed])
    assert await counts(runtime) == before
    monkeypatch.undo()
    hit = (await runtime.search.search("sunlight skin", top_k=1, strategy="bm25")).hits[0]
    assert hit.external_id == "bio"


async def test_delete_cascades_to_chunks_vectors_and_postings(runtime: Runtime) -> None:
    await runtime.ingestion.ingest(corpus())
    async with runtime.engine.begin() as conn:
        await conn.execute(delete(Document))
    assert await counts(runtime) == {"documents": 0, "chunks": 0, "embeddings": 0, "lexical": 0}
    assert (await runtime.search.search("vitamin", top_k=5, strategy="bm25")).hits == []


async def test_bad_document_in_a_batch_writes_nothing(runtime: Runtime) -> None:
    docs = corpus() + [SourceDocument(text="   \n ", external_id="empty", origin="notes/empty.txt")]
    with pytest.raises(IngestError, match="notes/empty.txt: contains no text"):
        await runtime.ingestion.ingest(docs)
    assert (await counts(runtime))["documents"] == 0
    runtime.ingestion.settings = runtime.settings.model_copy(update={"max_document_bytes": 2048})
    with pytest.raises(IngestError, match="big.txt: text is .* over the 2,048-byte limit"):
        await runtime.ingestion.ingest([SourceDocument(text="word " * 1000, origin="big.txt")])
    assert (await counts(runtime))["documents"] == 0


async def test_long_document_is_chunked_with_overlap(runtime: Runtime) -> None:
    sentences = [f"Sentence number {i} talks about topic {i % 7} in some detail." for i in range(200)]
    report = await runtime.ingestion.ingest([SourceDocument(text=" ".join(sentences), title="Long", external_id="long")])
    assert report.chunks > 3
    async with runtime.engine.connect() as conn:
        rows = (await conn.execute(select(Chunk.text, Chunk.token_count).order_by(Chunk.ordinal))).all()
    assert all(r.token_count <= runtime.settings.chunk_tokens for r in rows)
    for previous, current in zip(rows, rows[1:]):
        first_sentence = current.text.split(". ", 1)[0] + "."
        last_sentence = previous.text.rsplit(". ", 1)[-1]
        assert first_sentence in previous.text and last_sentence in current.text, "chunks overlap by whole sentences"
        assert len(current.text) > len(last_sentence) * 3, "overlap is bounded, the chunk moves on"


async def test_refuses_to_mix_embedding_spaces(runtime: Runtime) -> None:
    await runtime.ingestion.ingest(corpus()[:1])
    async with runtime.engine.begin() as conn:
        await conn.execute(text("UPDATE embeddings SET model = 'other-model'"))
    with pytest.raises(EmbeddingMismatchError, match="run `dtrag reindex`"):
        await runtime.ingestion.ingest([SourceDocument(text="new text", external_id="n")])
    assert await runtime.ingestion.reindex() == 1
    async with runtime.engine.connect() as conn:
        models = (await conn.execute(text("SELECT DISTINCT model FROM embeddings"))).scalars().all()
    assert models == [runtime.ingestion.embedder.name]
    report = await runtime.ingestion.ingest([SourceDocument(text="new text", external_id="n")])
    assert report.created == 1
    assert await runtime.ingestion.reindex() == 0  # nothing stale left


async def test_vectors_roundtrip_unchanged(runtime: Runtime) -> None:
    await runtime.ingestion.ingest(corpus()[:1])
    result = await runtime.search.search("Machine learning", top_k=1, strategy="dense")
    expected = await runtime.ingestion.embedder.embed_passages(["Machine learning\n" + result.hits[0].text])
    query = await runtime.ingestion.embedder.embed_query("Machine learning")
    assert result.hits[0].score == pytest.approx(float(expected[0] @ query), abs=1e-4)
    assert np.linalg.norm(expected[0]) == pytest.approx(1.0, abs=1e-3)
