"""ANSWER_PROVIDER=openai through the API, against local servers that misbehave on demand (the real
model server's contract is tests/integration/test_local_llm.py): 429/500 storms are retried and then
answered by the extractive composer, never a 5xx; an unreachable server at startup only degrades;
replicas step around a failing one; a wrong model name and a refused key are clear errors; usage is
counted when the server sends none, and /metrics/llm-cost shows what the provider spent."""

from __future__ import annotations

import socket

import pytest

from apps.core.config import load_settings
from apps.llm.base import ComposeRequest, Evidence, LLMError, Usage
from apps.llm.openai_chat import OpenAIChatProvider
from tests.support.api import Api, api_client
from tests.support.corpus import corpus
from tests.support.fake_chat import FakeChat, Reply

QUESTION = "What does vitamin D deficiency cause?"
EVIDENCE = (Evidence(1, "bio", "Vitamin D", "Vitamin D deficiency is associated with bone loss.", 1.0),)


@pytest.fixture
def chat():
    server = FakeChat()
    yield server
    server.stop()


@pytest.fixture
def sqlite_settings(tmp_path):
    from apps.core.migrations import upgrade

    url = f"sqlite+aiosqlite:///{tmp_path / 'llm.db'}"
    upgrade(url)
    return load_settings(database_url=url)


def with_model_server(settings, *urls: str, **more):
    return settings.model_copy(update={"answer_provider": "openai", "llm_base_url": ",".join(urls),
                                       "llm_model": "fake-chat", "llm_api_key": "sk-test", **more})


def fast(api: Api) -> OpenAIChatProvider:
    provider = api.runtime.pipelines.get().provider
    provider._backoff = 0.01  # type: ignore[attr-defined]  (test speed; the retries themselves are what is tested)
    return provider  # type: ignore[return-value]


async def _answer(api: Api, question: str = QUESTION, **body) -> dict:
    r = await api.client.post("/answer", headers=api.headers("read"), json={"q": question, **body})
    assert r.status_code == 200, r.text
    return r.json()


@pytest.mark.parametrize("status", [429, 500])
async def test_a_storm_of_429_or_500_is_retried_then_answered_extractively(settings, chat, status) -> None:
    chat.default = Reply("status", status=status)
    async with api_client(with_model_server(settings, chat.url)) as api:
        await api.runtime.ingestion.ingest(corpus())
        fast(api)
        for i in range(3):
            body = await _answer(api, f"{QUESTION} {i}")
            assert body["provider"] == "extractive" and "bone loss" in body["answer"]
            assert body["degraded"] and body["degraded_nodes"][0]["node"] == "compose"
            # The client reads what failed; the server's answer is for the operator (status below, the log).
            assert body["degraded_nodes"][0]["reason"] == "failed: the model did not answer usably"
        assert len(chat.requests) == 3 * 3  # LLM_ATTEMPTS per answer, then the fallback
        assert all(r["body"]["stream"] and r["auth"] == "Bearer sk-test" for r in chat.requests)
        status_now = await api.runtime.pipelines.provider_status(probe=False)
        assert status_now["state"] == "degraded" and status_now["errors"] == 3
        assert f"the LLM server answered {status}" in status_now["last_error"]


async def test_recovers_after_the_storm_and_costs_show_in_llm_cost(sqlite_settings, chat) -> None:
    chat.script = [Reply("status", status=503), Reply(text="Vitamin D deficiency causes bone loss [1]."),
                   Reply(text="YES")]
    configured = with_model_server(sqlite_settings, chat.url, llm_input_cost_per_mtok=2.0, llm_output_cost_per_mtok=4.0)
    async with api_client(configured) as api:
        await api.runtime.ingestion.ingest(corpus())
        fast(api)
        flag = await api.client.put("/api/v1/admin/feature-flags/llm_validation", headers=api.headers(),
                                    json={"enabled": True, "reason": "the judge is part of what is tested"})
        assert flag.status_code == 200, flag.text
        body = await _answer(api)
        assert not body["degraded"], body["degraded_nodes"]
        assert body["provider"] == "openai" and body["model"] == "fake-chat"
        assert body["answer"] == "Vitamin D deficiency causes bone loss [1]."
        assert body["validation"]["llm_judgement"] == "grounded"
        assert body["citations"][0]["chunk_ids"] == [body["sources"][0]["chunk_id"]]
        compose, judge = chat.requests[1]["body"], chat.requests[2]["body"]
        assert compose["messages"][0]["role"] == "system" and "in English" in compose["messages"][0]["content"]
        assert compose["messages"][1]["content"].endswith(f"Question: {QUESTION}\nAnswer:")
        assert judge["max_tokens"] == 8 and "YES or NO" in judge["messages"][0]["content"]
        usage = body["usage"]
        assert usage["input_tokens"] > 0 and usage["output_tokens"] == 7 + 1  # the answer's words and "YES"
        assert usage["cost_usd"] == pytest.approx((usage["input_tokens"] * 2 + usage["output_tokens"] * 4) / 1e6)
        cost = (await api.client.get("/metrics/llm-cost", headers=api.headers("read"))).json()
        [row] = [r for r in cost["by_model"] if r["provider"] == "openai"]
        assert row["model"] == "fake-chat" and row["requests"] == 1
        assert row["cost_usd"] == pytest.approx(usage["cost_usd"]) and cost["total_cost_usd"] == pytest.approx(usage["cost_usd"])
        assert (await api.runtime.pipelines.provider_status())["state"] == "ok"


async def test_korean_questions_get_korean_prompts(sqlite_settings, chat) -> None:
    chat.default = Reply(text="세종대왕은 1443년에 훈민정음을 창제하였다 [1].")
    async with api_client(with_model_server(sqlite_settings, chat.url)) as api:
        await api.runtime.ingestion.ingest(corpus())
        body = await _answer(api, "훈민정음은 언제 창제되었나?")
        assert body["language"] == "ko" and body["provider"] == "openai" and "1443년" in body["answer"]
        messages = chat.requests[0]["body"]["messages"]
        assert "한국어로" in messages[0]["content"] and messages[1]["content"].endswith("답변:")


async def test_a_server_down_at_startup_degrades_health_and_answers(sqlite_settings) -> None:
    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}/v1"
    async with api_client(with_model_server(sqlite_settings, closed)) as api:  # starts regardless
        await api.runtime.ingestion.ingest(corpus())
        fast(api)
        status = await api.runtime.pipelines.provider_status()
        assert status["state"] == "degraded" and "unreachable" in status["last_error"] and status["urls"] == [closed]
        for detailed in ("false", "true"):  # the probe of ?detailed=true finds it still down
            health = (await api.client.get("/health", params={"detailed": detailed})).json()
            assert health["status"] == "degraded"
            assert health["llm"]["state"] == "degraded" and health["llm"]["model"] == "fake-chat"
            assert "urls" not in health["llm"] and "last_error" not in health["llm"]  # unauthenticated: no addresses
        admin_view = (await api.client.get("/api/v1/admin/dashboard/llm", headers=api.headers("admin"))).json()
        assert admin_view["server"]["urls"] == [closed] and "unreachable" in admin_view["server"]["last_error"]
        body = await _answer(api)
        assert body["provider"] == "extractive"
        assert body["degraded_nodes"][0]["reason"] == "failed: the model did not answer usably"


async def test_replicas_step_around_a_failing_one(sqlite_settings) -> None:
    down, up = FakeChat(default=Reply("status", status=503)), FakeChat()
    try:
        provider = OpenAIChatProvider([down.url, up.url], "fake-chat", backoff_s=0.01, cooldown_s=60)
        for _ in range(4):
            assert (await provider.generate(ComposeRequest(QUESTION, "en", "answer", EVIDENCE))).text
        assert len(down.requests) == 1 and len(up.requests) == 4  # one failure, then it sits out its cooldown
        assert provider.replicas[0].failures == 1
        assert provider.status()["urls"] == [down.url, up.url]  # errors name "LLM server 1 of 2"; status the address
    finally:
        down.stop()
        up.stop()


@pytest.mark.parametrize(("reply", "error"), [
    (Reply(model="llama-3.1-8b"), r"serves 'llama-3.1-8b', not LLM_MODEL 'fake-chat'"),
    (Reply("status", status=401), r"refused the API key \(401; check LLM_API_KEY\)"),
    (Reply("status", status=404), r"answered 404 for model 'fake-chat' \(check LLM_MODEL"),
    (Reply("garbage"), r"malformed reply"),
    (Reply("empty"), r"returned no text"),
])
async def test_what_is_not_worth_retrying_is_a_clear_error_at_once(chat, reply, error) -> None:
    chat.default = reply
    provider = OpenAIChatProvider([chat.url], "fake-chat", backoff_s=0.01)
    with pytest.raises(LLMError, match=error):
        await provider.generate(ComposeRequest(QUESTION, "en", "answer", EVIDENCE))
    assert len(chat.requests) == 1
    assert provider.status()["state"] == "degraded" and provider.status()["errors"] == 1


async def test_a_wrong_model_shows_in_the_probe(chat) -> None:
    chat.models = ["qwen2.5-7b-instruct"]
    status = await OpenAIChatProvider([chat.url], "fake-chat").probe()
    assert status["state"] == "degraded"
    assert status["last_error"] == "the LLM server serves 'qwen2.5-7b-instruct', not LLM_MODEL 'fake-chat'"
    chat.models = ["fake-chat:latest"]  # Ollama's tag: the same model
    assert (await OpenAIChatProvider([chat.url], "fake-chat").probe())["state"] == "ok"


async def test_usage_is_counted_when_the_server_sends_none(chat) -> None:
    chat.default = Reply(text="Bone loss [1].", usage=False)
    provider = OpenAIChatProvider([chat.url], "fake-chat", input_cost_per_mtok=1.0, output_cost_per_mtok=1.0)
    request = ComposeRequest(QUESTION, "en", "answer", EVIDENCE)
    plain = await provider.generate(request)
    usage = Usage()
    streamed = "".join([piece async for piece in provider.stream(request, usage)])
    assert streamed == plain.text == "Bone loss [1]."
    assert plain.usage.output_tokens == usage.output_tokens == 5  # 14 UTF-8 bytes, about 3 a token
    assert plain.usage.input_tokens == usage.input_tokens > 50 and usage.cost_usd > 0
