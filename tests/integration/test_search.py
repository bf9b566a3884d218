"""Retrieval on both backends: strategies, filters, Korean, odd queries, degradation."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import text

from apps.core.visibility import EVERYTHING
from apps.runtime import Runtime
from apps.search.service import SearchUnavailableError, UnknownStrategyError
from apps.search.types import SearchFilters
from tests.support.corpus import corpus

STRATEGIES = ["bm25", "dense", "hybrid_rrf", "hybrid_cc"]


@pytest.fixture
async def loaded(runtime: Runtime) -> Runtime:
    await runtime.ingestion.ingest(corpus())
    return runtime


def ids(result) -> list[str]:
    return [h.external_id for h in result.hits]


@pytest.mark.parametrize("strategy", STRATEGIES)
async def test_each_strategy_finds_the_relevant_document(loaded: Runtime, strategy: str) -> None:
    result = await loaded.search.search("vitamin D and bone loss", top_k=3, strategy=strategy)
    assert result.strategy == strategy
    assert ids(result)[0] == "bio"
    assert not result.degraded
    top = result.hits[0]
    assert top.text and top.title == "Vitamin D" and top.taxonomy_path == "science/health"
    if strategy in ("bm25", "hybrid_rrf", "hybrid_cc"):
        assert top.ranks["bm25"] == 1
    if strategy in ("dense", "hybrid_rrf", "hybrid_cc"):
        assert top.ranks["dense"] == 1
    scores = [h.score for h in result.hits]
    assert scores == sorted(scores, reverse=True)


async def test_hybrid_reports_both_legs_ranks_and_candidates(loaded: Runtime) -> None:
    result = await loaded.search.search("PostgreSQL indexes", top_k=6, strategy="hybrid_rrf")
    assert ids(result)[0] == "db"
    assert result.total_candidates >= len(result.hits)
    assert set(result.timings_ms) == {"bm25", "dense"}
    # dense ranks every document; bm25 only those sharing a term
    assert all(h.ranks["dense"] is not None for h in result.hits)
    assert any(h.ranks["bm25"] is None for h in result.hits)


async def test_korean_query_finds_korean_documents(loaded: Runtime) -> None:
    for strategy in STRATEGIES:
        result = await loaded.search.search("훈민정음은 누가 창제했나?", top_k=2, strategy=strategy)
        assert ids(result)[0] == "ko-history", strategy
    bm25 = await loaded.search.search("인공지능 학습", top_k=5, strategy="bm25")
    assert ids(bm25)[0] == "ko-ml"


async def test_cross_lingual_dense(loaded: Runtime) -> None:
    result = await loaded.search.search("기계 학습 machine learning", top_k=2, strategy="dense")
    assert set(ids(result)) == {"ml", "ko-ml"}


async def test_filters(loaded: Runtime) -> None:
    s = loaded.search
    for strategy in STRATEGIES:
        tech = await s.search("learning data", top_k=10, strategy=strategy, filters=SearchFilters(taxonomy_path="tech"))
        assert {h.taxonomy_path for h in tech.hits} <= {"tech/ai", "tech/data"}, strategy
        assert "air" not in ids(tech)  # "techno" is not under "tech"
        ko = await s.search("learning", top_k=10, strategy=strategy, filters=SearchFilters(language="ko"))
        assert set(ids(ko)) <= {"ko-ml", "ko-history"}
    dense_ko = await s.search("learning", top_k=10, strategy="dense", filters=SearchFilters(language="ko"))
    assert set(ids(dense_ko)) == {"ko-ml", "ko-history"}
    doc_ids = {h.external_id: h.doc_id for h in (await s.search("anything", top_k=10, strategy="dense")).hits}
    only = await s.search("vitamin", top_k=10, filters=SearchFilters(doc_ids=(doc_ids["db"], doc_ids["ml"])))
    assert set(ids(only)) <= {"db", "ml"} and ids(only)
    research = await s.search("learning", top_k=10, strategy="dense", filters=SearchFilters(metadata={"team": "research"}))
    assert set(ids(research)) == {"ml", "bio", "ko-ml"}
    both = await s.search("x", top_k=10, strategy="dense", filters=SearchFilters(metadata={"team": "research", "year": 2024}))
    assert set(ids(both)) == {"ml", "ko-ml"}
    none = await s.search("learning", top_k=10, filters=SearchFilters(metadata={"team": "nobody"}))
    assert none.hits == []
    empty_ids = await s.search("learning", top_k=10, filters=SearchFilters(doc_ids=()))
    assert empty_ids.hits == []


async def _dense_ids(rt: Runtime, filters: SearchFilters | None = None) -> list[tuple[int, float]]:
    vector = await rt.search.embedder.embed_query("learning from data")
    hits = await rt.store.dense(vector, rt.search.embedder.name, 100, filters or SearchFilters(), EVERYTHING)
    return [(h.chunk_id, round(h.score, 5)) for h in hits]


async def _embedded_chunk_ids(rt: Runtime) -> set[int]:
    async with rt.engine.connect() as conn:
        return set((await conn.execute(text("SELECT chunk_id FROM embeddings"))).scalars())


async def test_dense_index_agrees_with_the_exact_scan(loaded: Runtime) -> None:
    """Unfiltered dense search walks the index (sqlite-vec / HNSW); a filter keeps it exact: same ranking."""
    all_docs = {h.doc_id for h in (await loaded.search.search("x", top_k=100, strategy="dense")).hits}
    indexed = await _dense_ids(loaded)
    exact = await _dense_ids(loaded, SearchFilters(doc_ids=tuple(sorted(all_docs))))
    assert indexed == exact and len(indexed) == len(await _embedded_chunk_ids(loaded))


async def test_dense_index_follows_replace_delete_and_reindex(loaded: Runtime) -> None:
    from apps.ingestion.documents import SourceDocument

    rt = loaded
    await rt.ingestion.ingest([SourceDocument(text="Vitamin C is found in citrus fruit.", title="Vitamin C",
                                              external_id="bio")])  # replaces "bio"
    assert {c for c, _ in await _dense_ids(rt)} == await _embedded_chunk_ids(rt)
    async with rt.engine.begin() as conn:
        await conn.execute(text("DELETE FROM documents WHERE external_id = 'ml'"))  # cascades
    assert {c for c, _ in await _dense_ids(rt)} == await _embedded_chunk_ids(rt)
    async with rt.engine.begin() as conn:
        await conn.execute(text("UPDATE embeddings SET model = 'other-model'"))
    assert await _dense_ids(rt) == []  # the index is per model
    assert await rt.ingestion.reindex() == len(await _embedded_chunk_ids(rt))
    assert {c for c, _ in await _dense_ids(rt)} == await _embedded_chunk_ids(rt)
    if rt.store.backend == "sqlite":
        async with rt.engine.connect() as conn:
            mirrored = (await conn.execute(text("SELECT count(*) FROM vec_embeddings_384"))).scalar_one()
        assert mirrored == len(await _embedded_chunk_ids(rt))


async def test_odd_queries_do_not_crash(loaded: Runtime) -> None:
    s = loaded.search
    long_query = ("vitamin D bone health sunlight " * 200)[:5000]
    assert len(long_query) == 5000
    result = await s.search(long_query, top_k=3)
    assert ids(result)[0] == "bio"
    stop = await s.search("the of and is", top_k=3, strategy="hybrid_cc")
    assert len(stop.hits) == 3 and not stop.degraded  # dense still answers
    assert (await s.search("the of and is", top_k=3, strategy="bm25")).hits == []
    punct = await s.search("?!... ;;; ---", top_k=3)
    assert len(punct.hits) == 3
    quotes = await s.search('"vitamin" OR NEAR(x) AND -bone*', top_k=3, strategy="bm25")  # FTS5 syntax is inert
    assert ids(quotes)[0] == "bio"


async def test_unknown_strategy(loaded: Runtime) -> None:
    with pytest.raises(UnknownStrategyError, match="choose one of"):
        await loaded.search.search("x", strategy="magic")


async def test_a_failing_leg_degrades_instead_of_failing(loaded: Runtime, monkeypatch) -> None:
    async def broken(*args, **kwargs):
        raise ConnectionError("vector index unavailable")

    monkeypatch.setattr(loaded.store, "dense", broken)
    result = await loaded.search.search("vitamin D", top_k=3, strategy="hybrid_cc")
    assert result.degraded and ids(result)[0] == "bio"
    assert result.degraded_reasons[0].startswith("dense leg failed")
    assert "vector index unavailable" not in result.degraded_reasons[0]  # what failed, not the internals
    with pytest.raises(SearchUnavailableError):
        await loaded.search.search("vitamin D", strategy="dense")


async def test_a_slow_leg_times_out_and_degrades(loaded: Runtime, monkeypatch) -> None:
    loaded.search.settings = loaded.settings.model_copy(update={"leg_timeout_ms": 100})
    original = loaded.store.bm25

    async def slow(*args, **kwargs):
        await asyncio.sleep(5)
        return await original(*args, **kwargs)

    monkeypatch.setattr(loaded.store, "bm25", slow)
    start = asyncio.get_running_loop().time()
    result = await loaded.search.search("vitamin D", top_k=3, strategy="hybrid_rrf")
    assert asyncio.get_running_loop().time() - start < 2
    assert result.degraded and result.degraded_reasons == ["bm25 leg timed out"]
    assert ids(result)[0] == "bio"


async def test_bm25_ranks_identically_on_both_backends(tmp_path, postgres, pg_template) -> None:
    """FTS5's bm25() is the reference; the PostgreSQL SQL must give the same scores (k1, b as floats)."""
    from apps.core.config import load_settings
    from apps.core.migrations import upgrade
    from apps.runtime import build_runtime

    sqlite_url = f"sqlite+aiosqlite:///{tmp_path / 'parity.db'}"
    upgrade(sqlite_url)
    results = []
    for url in (sqlite_url, postgres.url(postgres.create_database(template=pg_template))):
        rt = build_runtime(load_settings(database_url=url))
        try:
            await rt.ingestion.ingest(corpus())
            hits = (await rt.search.search("learning data queries bone tables hour", top_k=5, strategy="bm25")).hits
            results.append([(h.external_id, round(h.score, 6)) for h in hits])
        finally:
            await rt.close()
    assert results[0] == results[1] and len(results[0]) >= 2
