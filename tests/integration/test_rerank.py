"""Reranking as a strategy: local servers speaking each /rerank shape reorder the fused candidates; a slow
or failing one leaves the fused order in place, counted; the reranked arms join the bandit only when a
reranker is configured, and its per-call price is taken from their reward."""

from __future__ import annotations

import time

import pytest
from prometheus_client import REGISTRY

from apps.orchestration.src.bandit.decision_log import Decision
from apps.runtime import build_runtime
from apps.search.rerank import RerankError
from apps.search.rerank.http import HTTPReranker
from tests.support.api import api_client
from tests.support.corpus import corpus
from tests.support.fake_rerank import FakeReranker, relevance

QUERY = "How do models learn from training data?"
FAVOURITE = "PostgreSQL"  # the fake reranker's bonus: the database document, far down the fused order


def rerank_settings(settings, server: FakeReranker, **more):
    return settings.model_copy(update={"rerank_provider": "tei", "rerank_base_url": server.url,
                                       "rerank_timeout_s": 0.5, **more})


@pytest.fixture
def server():
    fake = FakeReranker("tei", favourite=FAVOURITE)
    yield fake
    fake.stop()


@pytest.fixture
async def runtime_reranking(settings, server):
    rt = build_runtime(rerank_settings(settings, server))
    await rt.ingestion.ingest(corpus())
    yield rt
    await rt.close()


def _calls(outcome: str) -> float:
    return REGISTRY.get_sample_value("dtrag_rerank_calls_total", {"outcome": outcome}) or 0.0


@pytest.mark.parametrize("shape", ["tei", "cohere", "jina"])
async def test_each_api_shape(shape: str) -> None:
    fake = FakeReranker("tei" if shape == "tei" else "cohere")
    try:
        prefix = fake.url if shape == "tei" else f"{fake.url}/v1"
        reranker = HTTPReranker(shape, prefix, None if shape == "tei" else "bge-reranker-v2-m3", "rk-test")
        documents = ["Kimchi is fermented cabbage.", "Vitamin D deficiency causes bone loss.", "Vitamin pills."]
        scores = await reranker.rerank("vitamin D deficiency", documents)
        # The server answers best first; the scores come back in the documents' order.
        assert scores == [relevance("vitamin D deficiency", d, None) for d in documents]
        assert scores[1] > scores[2] > scores[0]
        [request] = fake.requests
        assert request["auth"] == "Bearer rk-test" and request["path"] == ("/rerank" if shape == "tei" else "/v1/rerank")
        expected = ({"query": "vitamin D deficiency", "texts": documents, "truncate": True} if shape == "tei" else
                    {"query": "vitamin D deficiency", "documents": documents, "top_n": 3, "model": "bge-reranker-v2-m3"})
        if shape == "jina":
            expected["return_documents"] = False
        assert request["body"] == expected
    finally:
        fake.stop()


@pytest.mark.parametrize("step", ["500", "garbage"])
async def test_a_refusal_or_nonsense_is_a_rerank_error(step: str) -> None:
    fake = FakeReranker("cohere", default=step)
    try:
        with pytest.raises(RerankError, match="500|unexpected reply"):
            await HTTPReranker("cohere", fake.url, "m").rerank("q", ["a", "b"])
    finally:
        fake.stop()


async def test_the_reranked_strategy_reorders_the_fused_candidates(runtime_reranking, server) -> None:
    rt = runtime_reranking
    fused = await rt.search.search(QUERY, top_k=50, strategy="hybrid_cc")
    ok_before = _calls("ok")
    result = await rt.search.search(QUERY, top_k=3, strategy="hybrid_cc+rerank")
    assert result.strategy == "hybrid_cc+rerank" and not result.degraded and "rerank" in result.timings_ms
    # Every fused candidate (fewer than RERANK_TOP_N here) went to the reranker, title and text, in fused order.
    [request] = server.requests
    assert request["body"]["texts"] == [f"{h.title}\n{h.text}" for h in fused.hits]
    expected = sorted(fused.hits, key=lambda h: -relevance(QUERY, f"{h.title}\n{h.text}", FAVOURITE))[:3]
    assert [h.chunk_id for h in result.hits] == [h.chunk_id for h in expected]
    assert result.hits[0].title == "Relational databases" and fused.hits[0].title != "Relational databases"
    assert [h.score for h in result.hits] == sorted((h.score for h in result.hits), reverse=True)
    assert all(h.scores["rerank"] == h.score for h in result.hits)
    assert _calls("ok") == ok_before + 1


async def test_only_the_top_n_are_sent(settings, server) -> None:
    rt = build_runtime(rerank_settings(settings, server, rerank_top_n=2))
    try:
        await rt.ingestion.ingest(corpus())
        fused = await rt.search.search(QUERY, top_k=5, strategy="hybrid_rrf")
        result = await rt.search.search(QUERY, top_k=5, strategy="hybrid_rrf+rerank")
        assert server.requests[0]["body"]["texts"] == [f"{h.title}\n{h.text}" for h in fused.hits[:2]]
        # The top two in the reranker's order, the rest as fused.
        assert {h.chunk_id for h in result.hits[:2]} == {h.chunk_id for h in fused.hits[:2]}
        assert [h.chunk_id for h in result.hits[2:]] == [h.chunk_id for h in fused.hits[2:]]
        assert all("rerank" in h.scores for h in result.hits[:2]) and not any("rerank" in h.scores for h in result.hits[2:])
    finally:
        await rt.close()


@pytest.mark.parametrize(("step", "outcome", "reason"), [
    ("slow", "timeout", "rerank timed out; fused order served"),
    ("500", "error", "rerank failed; fused order served"),
    ("garbage", "error", "rerank failed; fused order served"),
])
async def test_a_slow_or_failing_reranker_serves_the_fused_order(runtime_reranking, server, step, outcome,
                                                                 reason) -> None:
    server.default, server.delay_s = step, 2.0
    fused = await runtime_reranking.search.search(QUERY, top_k=3, strategy="hybrid_cc")
    before = _calls(outcome)
    start = time.perf_counter()
    result = await runtime_reranking.search.search(QUERY, top_k=3, strategy="hybrid_cc+rerank")
    assert time.perf_counter() - start < 1.5  # RERANK_TIMEOUT_S (0.5 s) bounds the wait, not the server
    assert [h.chunk_id for h in result.hits] == [h.chunk_id for h in fused.hits]
    assert result.degraded and result.degraded_reasons == [reason]
    assert _calls(outcome) == before + 1
    status = runtime_reranking.search.reranker.status()
    assert status["state"] == "degraded" and status["errors"] == 1 and status["calls"] == 1 and status["last_error"]


async def test_reranked_arms_join_the_bandit_only_when_configured(runtime, settings, server) -> None:
    assert "hybrid_cc+rerank" not in runtime.search.strategies and "hybrid_cc+rerank" not in runtime.bandit.learner.arms
    priced = rerank_settings(settings, server, rerank_cost_per_call_usd=0.002, bandit_cost_per_usd=100.0)
    assert priced.arms == (*settings.arms, "hybrid_cc+rerank")
    rt = build_runtime(priced)
    try:
        assert rt.bandit.learner.arms == priced.arms
        assert {"bm25+rerank", "dense+rerank", "hybrid_rrf+rerank", "hybrid_cc+rerank"} <= set(rt.search.strategies)
        # The price of a reranked search comes off its reward, as latency does (0.002 $ × 100 per $ = 0.2).
        assert rt.bandit.reward(0.8, 0.0, "hybrid_cc+rerank") == pytest.approx(0.6)
        assert rt.bandit.reward(0.8, 0.0, "hybrid_cc") == pytest.approx(0.8)
        decision = Decision(request_id="r1", endpoint="answer", state="s", action="hybrid_cc+rerank",
                            probabilities={}, policy_version=0, variant="legacy", latency_ms=0.0)
        rt.bandit.commit(decision, quality=1.0)
        assert decision.implicit_reward == pytest.approx(0.8)
    finally:
        await rt.close()


async def test_the_api_serves_the_reranked_strategy(settings, server) -> None:
    async with api_client(rerank_settings(settings, server)) as api:
        await api.runtime.ingestion.ingest(corpus())
        r = await api.client.post("/api/v1/search/", headers=api.headers("read"),
                                  json={"q": QUERY, "final_topk": 2, "strategy": "hybrid_cc+rerank"})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["strategy"] == "hybrid_cc+rerank" and body["hits"][0]["title"] == "Relational databases"
        health = (await api.client.get("/health")).json()
        assert health["status"] == "healthy" and health["llm"] is None  # the extractive composer: no server
        assert health["reranker"]["provider"] == "tei" and health["reranker"]["state"] == "ok"
        assert health["reranker"]["calls"] == 1 and health["reranker"]["latency_ms"] > 0
        assert "url" not in health["reranker"]
        server.default = "500"
        await api.client.post("/api/v1/search/", headers=api.headers("read"),  # another query: not the cached one
                              json={"q": "vitamin D", "final_topk": 2, "strategy": "hybrid_cc+rerank"})
        health = (await api.client.get("/health")).json()
        assert health["status"] == "degraded" and health["reranker"]["errors"] == 1
        view = (await api.client.get("/api/v1/admin/dashboard/llm", headers=api.headers("admin"))).json()
        assert view["reranker"]["url"] == f"{server.url}/rerank" and "500" in view["reranker"]["last_error"]
