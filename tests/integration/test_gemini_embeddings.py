"""The `gemini` embedding provider against a local server speaking the Gemini REST API: what the SDK
sends, batching, normalisation, retries and failures; end to end on both backends."""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import text

from apps.core.config import load_settings
from apps.runtime import build_runtime
from apps.search.embeddings.base import EmbeddingError
from apps.search.embeddings.gemini_provider import GeminiEmbeddingProvider
from apps.search.embeddings.token_count import estimated_tokens
from tests.support.corpus import corpus
from tests.support.fake_gemini import Behaviour, FakeGemini
from tests.support.fake_openai import bag_of_words


@pytest.fixture
def fake():
    server = FakeGemini()
    yield server
    server.stop()


def provider(fake: FakeGemini, **kwargs) -> GeminiEmbeddingProvider:
    kwargs.setdefault("backoff_s", 0.01)
    return GeminiEmbeddingProvider(api_key="test-key", base_url=fake.url, **kwargs)


def expected(texts: list[str], dim: int) -> np.ndarray:
    vectors = np.asarray([bag_of_words(t, dim) for t in texts], dtype=np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def sent(fake: FakeGemini) -> list[dict]:
    return [item for r in fake.requests for item in r["body"]["requests"]]


async def test_task_types_dimensions_and_identity(fake) -> None:
    default = provider(fake)
    assert default.name == "gemini-embedding-001@768" and default.dim == 768
    query = await default.embed_query("vitamin D")
    passages = await default.embed_passages(["Vitamin D helps bones.", "세종대왕은 훈민정음을 창제했다."])
    assert query.shape == (768,) and passages.shape == (2, 768)
    assert query.dtype == passages.dtype == np.float32
    assert np.linalg.norm(bag_of_words("vitamin D", 768)) > 1.5  # the server's vectors are not unit length
    assert np.allclose(np.linalg.norm(passages, axis=1), 1, atol=1e-5) and abs(np.linalg.norm(query) - 1) < 1e-5
    assert all(r["path"] == "/v1/models/gemini-embedding-001:batchEmbedContents" and r["key"] == "test-key"
               for r in fake.requests)
    items = sent(fake)
    assert [i["taskType"] for i in items] == ["RETRIEVAL_QUERY", "RETRIEVAL_DOCUMENT", "RETRIEVAL_DOCUMENT"]
    assert {i["outputDimensionality"] for i in items} == {768}
    assert {i["model"] for i in items} == {"models/gemini-embedding-001"}
    assert items[2]["content"]["parts"] == [{"text": "세종대왕은 훈민정음을 창제했다."}]  # one text, one entry
    assert default.count_tokens("세종대왕") == estimated_tokens("세종대왕")
    await default.aclose()

    small = provider(fake, dimensions=256)
    assert small.name == "gemini-embedding-001@256"  # a truncated space is another identity
    assert (await small.embed_query("vitamin D")).shape == (256,)
    assert sent(fake)[-1]["outputDimensionality"] == 256
    await small.aclose()


async def test_passages_go_in_batches_of_100_bounded_and_in_order(fake) -> None:
    texts = [f"passage {i} about topic {i % 7}" for i in range(250)]
    # The first batch answers last, so the order must come from the input, not from completion.
    fake.route = lambda prompt: Behaviour(delay_s=0.4 if prompt.startswith("passage 0 ") else 0.1)
    embedder = provider(fake, batch_size=500, max_in_flight=2)  # more than the API takes in one request
    vectors = await embedder.embed_passages(texts)
    assert sorted(len(r["body"]["requests"]) for r in fake.requests) == [50, 100, 100]
    assert fake.peak_in_flight == 2
    assert vectors.shape == (250, 768)
    assert np.allclose(vectors, expected(texts, 768), atol=1e-6)
    assert float(vectors[0] @ vectors[7]) > float(vectors[0] @ vectors[1])  # shared words are nearer
    await embedder.aclose()


@pytest.mark.parametrize("failures", [[429], [503, 503]])
async def test_rate_limits_and_server_errors_are_retried(fake, failures) -> None:
    fake.script = [Behaviour("status", status=s) for s in failures]
    embedder = provider(fake)
    vector = await embedder.embed_query("retry me")
    assert len(fake.requests) == len(failures) + 1
    assert np.allclose(vector, expected(["retry me"], 768)[0], atol=1e-6)
    await embedder.aclose()


async def test_a_client_error_fails_at_once(fake) -> None:
    fake.script = [Behaviour("status", status=400)]
    embedder = provider(fake)
    with pytest.raises(EmbeddingError, match="400 INVALID_ARGUMENT: scripted failure"):
        await embedder.embed_passages(["one", "two"])
    assert len(fake.requests) == 1
    await embedder.aclose()


async def test_exhausted_retries_end_as_an_embedding_error(fake) -> None:
    fake.default = Behaviour("status", status=500)
    embedder = provider(fake, attempts=3)
    with pytest.raises(EmbeddingError, match="500 INTERNAL"):
        await embedder.embed_query("give up")
    assert len(fake.requests) == 3
    await embedder.aclose()


@pytest.mark.parametrize("backend", ["httpx2", "httpx"])  # the SDK's default and its alternative
async def test_a_stalled_request_times_out_and_is_retried(fake, monkeypatch, backend) -> None:
    monkeypatch.setenv("GOOGLE_GENAI_HTTP_CLIENT", backend)
    fake.script = [Behaviour(delay_s=1.5)]
    embedder = provider(fake, timeout_s=0.3)
    assert (await embedder.embed_query("slow")).shape == (768,)
    assert len(fake.requests) == 2
    await embedder.aclose()
    fake.default = Behaviour(delay_s=1.5)
    stalled = provider(fake, timeout_s=0.3, attempts=2)
    with pytest.raises(EmbeddingError, match="unreachable after 2 tries"):
        await stalled.embed_query("never")
    assert len(fake.requests) == 4
    await stalled.aclose()


@pytest.mark.parametrize("behaviour, message", [(Behaviour("malformed"), "malformed reply"),
                                                (Behaviour("empty"), "0 vectors for 2 texts"),
                                                (Behaviour(dim=32), "32-d vectors; 768-d were asked for")])
async def test_unusable_replies_are_clear_errors_not_retried(fake, behaviour, message) -> None:
    fake.script = [behaviour]
    embedder = provider(fake)
    with pytest.raises(EmbeddingError, match=message):
        await embedder.embed_passages(["one", "two"])
    assert len(fake.requests) == 1
    await embedder.aclose()


async def test_a_closed_provider_opens_again(fake) -> None:
    embedder = provider(fake)  # the factory keeps providers for the process, past a caller's aclose()
    await embedder.embed_query("first")
    await embedder.aclose()
    assert (await embedder.embed_query("again")).shape == (768,)
    await embedder.aclose()


async def test_end_to_end(database_url, fake) -> None:
    settings = load_settings(database_url=database_url, embedding_provider="gemini", embedding_api_key="test-key",
                             embedding_base_url=fake.url, embedding_cache_path=None)
    rt = build_runtime(settings)
    try:
        report = await rt.ingestion.ingest(corpus())
        assert report.chunks > 0
        hits = (await rt.search.search("vitamin D bone loss", strategy="dense")).hits
        assert hits and hits[0].title == "Vitamin D"
        async with rt.engine.connect() as conn:
            rows = (await conn.execute(text("SELECT DISTINCT model, dim FROM embeddings"))).all()
        assert rows == [("gemini-embedding-001@768", 768)]
        task_types = {i["taskType"] for i in sent(fake)}
        assert task_types == {"RETRIEVAL_DOCUMENT", "RETRIEVAL_QUERY"}
    finally:
        await rt.close()
