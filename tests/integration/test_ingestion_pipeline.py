"""Overlapped ingestion (prepare, embed and write a batch apart), resuming after a crash, and the
lexical index following KOREAN_ANALYZER through `reindex`; both backends."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import text

from apps.core.config import load_settings
from apps.ingestion.documents import SourceDocument
from apps.ingestion.errors import AnalyzerMismatchError
from apps.runtime import build_runtime
from tests.support.corpus import corpus
from tests.support.ingestion import SlowCountingEmbedder, service


def documents(n: int) -> list[SourceDocument]:
    return [SourceDocument(text=f"Document {i} is about topic {i} and its many details.", title=f"Doc {i}",
                           external_id=f"doc-{i}") for i in range(n)]


async def test_the_next_batch_is_prepared_while_this_one_embeds(runtime) -> None:
    embedder = SlowCountingEmbedder(runtime.ingestion.embedder, delay_s=0.3)
    ingestion = service(runtime, embedder)
    prepared_at: list[float] = []
    prepare = ingestion.prepare

    def timed_prepare(doc, collection_id):
        prepared_at.append(time.perf_counter())
        return prepare(doc, collection_id)

    ingestion.prepare = timed_prepare  # type: ignore[method-assign]
    progress = []
    report = await ingestion.ingest(documents(6), batch_size=2, on_progress=progress.append)
    assert report.created == 6 and len(embedder.calls) == 3
    _, first_end, _ = embedder.calls[0]
    # Batch 2 (documents 3-4) was prepared before batch 1's embedding ended, not after it.
    assert prepared_at[2] < first_end
    assert [p.documents for p in progress] == [0, 2, 4, 6]
    assert progress[-1].tokens == report.tokens > 0 and progress[-1].tokens_per_second > 0


async def test_a_crash_resumes_from_the_last_committed_batch(runtime) -> None:
    crashing = SlowCountingEmbedder(runtime.ingestion.embedder, fail_on_call=3)
    with pytest.raises(RuntimeError, match="went away"):
        await service(runtime, crashing).ingest(documents(6), batch_size=2)
    async with runtime.engine.connect() as conn:
        committed = (await conn.execute(text("SELECT count(*) FROM documents"))).scalar_one()
        assert (await conn.execute(text("SELECT count(*) FROM chunks"))).scalar_one() == committed  # whole batches
    assert committed == 4  # the failure on batch 3 still lets batches 1 and 2, embedded before it, commit
    again = SlowCountingEmbedder(runtime.ingestion.embedder)
    report = await service(runtime, again).ingest(documents(6), batch_size=2)
    assert (report.unchanged, report.created) == (committed, 6 - committed)
    assert sum(n for _, _, n in again.calls) == 6 - committed  # committed documents are not embedded again


async def test_changing_the_korean_analyser_needs_reindex(database_url) -> None:
    kiwi = build_runtime(load_settings(database_url=database_url, korean_analyzer="kiwi"))
    try:
        await kiwi.ingestion.ingest(corpus())
    finally:
        await kiwi.close()
    bigram = build_runtime(load_settings(database_url=database_url, korean_analyzer="bigram"))
    try:
        with pytest.raises(AnalyzerMismatchError, match="dtrag reindex"):
            await bigram.ingestion.ingest([SourceDocument(text="새 문서이다.", title="새 문서")])
        await bigram.ingestion.reindex()
        await bigram.ingestion.check_compatible()
        hits = (await bigram.search.search("훈민정음을 창제한 왕", strategy="bm25")).hits
        assert hits and hits[0].title == "세종대왕"
        async with bigram.engine.connect() as conn:
            lexical = (await conn.execute(text(
                "SELECT c.lexical FROM chunks c JOIN documents d ON d.id = c.document_id WHERE d.title = '세종대왕'"
            ))).scalar_one()
        assert "훈민 민정 정음" in lexical
        if bigram.store.backend == "postgresql":
            async with bigram.engine.connect() as conn:
                assert (await conn.execute(text("SELECT count(*) FROM chunk_terms WHERE term = '민정'"))).scalar_one() == 1
    finally:
        await bigram.close()
