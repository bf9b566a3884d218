"""The OpenAI-compatible provider against a real model server: llama.cpp's (xllamacpp) serving the packaged
Gemma 3 270M on loopback. A 270M base model answers poorly; these tests hold the plumbing and the
contracts (usage counted and priced, a stream spelling out the same text as the plain call at temperature
0, citations parsed against the evidence, a judge's reply either a verdict or a clear error, a debate's
calls accounted, a timeout a clear error), not the quality of what it says."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from apps.core.config import load_settings
from apps.llm.base import ComposeRequest, Evidence, LLMError, Usage
from apps.llm.factory import local_config
from apps.llm.local import LocalServer, serve_local
from apps.llm.openai_chat import OpenAIChatProvider
from apps.orchestration.src.answer_models import AnswerRequest
from apps.orchestration.src.debate import DebateEngine
from apps.text.analyzer import get_analyzer
from tests.support.corpus import corpus
from tests.support.llama_server import llama_server  # noqa: F401  (the session's model server)

EVIDENCE = (
    Evidence(1, "bio", "Vitamin D", "Vitamin D deficiency is associated with bone loss. Sunlight helps.", 1.0),
    Evidence(2, "kimchi", "Kimchi", "Kimchi is fermented napa cabbage, a staple of Korean cuisine.", 0.4),
)
QUESTION = "What does vitamin D deficiency cause?"


def provider(server: LocalServer, **options) -> OpenAIChatProvider:
    defaults = {"temperature": 0.0, "max_tokens": 40, "stop": ["\n\n"], "input_cost_per_mtok": 1.0,
                "output_cost_per_mtok": 2.0, "backoff_s": 0.01}
    return OpenAIChatProvider([server.url], server.model, **(defaults | options))


async def test_compose_counts_and_prices_usage(llama_server: LocalServer) -> None:  # noqa: F811
    p = provider(llama_server)
    generation = await p.generate(ComposeRequest(QUESTION, "en", "answer", EVIDENCE))
    assert generation.text and generation.provider == "openai" and generation.model == "gemma-3-270m-q4_k_m"
    usage = generation.usage
    assert usage.input_tokens > 20 and 0 < usage.output_tokens <= 40
    assert usage.cost_usd == pytest.approx((usage.input_tokens * 1.0 + usage.output_tokens * 2.0) / 1e6)
    assert p.status()["state"] == "ok" and p.status()["latency_ms"] > 0


async def test_stream_equals_the_plain_call_at_temperature_zero(llama_server: LocalServer) -> None:  # noqa: F811
    p = provider(llama_server)
    for request in (ComposeRequest(QUESTION, "en", "answer", EVIDENCE),
                    ComposeRequest("훈민정음은 언제 창제되었나?", "ko", "answer",
                                   (Evidence(3, "ko", "세종대왕", "세종대왕은 1443년에 훈민정음을 창제하였다.", 1.0),))):
        plain = await p.generate(request)
        usage = Usage()
        pieces = [piece async for piece in p.stream(request, usage)]
        assert len(pieces) > 1  # server-sent deltas, not one block
        assert "".join(pieces).strip() == plain.text
        assert (usage.input_tokens, usage.output_tokens) == (plain.usage.input_tokens, plain.usage.output_tokens)
        assert usage.cost_usd == plain.usage.cost_usd


async def test_judge_is_a_verdict_or_a_clear_error_and_always_counted(llama_server: LocalServer) -> None:  # noqa: F811
    p = provider(llama_server)
    usage = Usage()
    try:
        verdict = await p.judge(QUESTION, "Vitamin D deficiency causes bone loss [1].", EVIDENCE, usage)
        assert isinstance(verdict, bool)
    except LLMError as exc:  # a base model rarely says YES or NO; what it said is quoted, never guessed at
        assert "not YES or NO" in str(exc)
    assert usage.input_tokens > 20 and 0 < usage.output_tokens <= 8 and usage.cost_usd > 0


async def test_two_agent_debate_over_http(llama_server: LocalServer) -> None:  # noqa: F811
    p = provider(llama_server, max_tokens=64)
    engine = DebateEngine(p, agents=2, max_rounds=1, timeout_s=120, agent_max_tokens=48, analyzer=get_analyzer("bigram"))
    result = await engine.run_debate(QUESTION, list(EVIDENCE))
    assert result.rounds == 1 and len(result.transcript[0]) == 2
    assert result.llm_calls in (2, 3)  # both agents, and the judge when they disagreed
    assert [t.error for t in result.transcript[0]] == [None, None]
    assert all(t.answer for t in result.transcript[0])
    assert result.usage.input_tokens > 40 and result.usage.output_tokens > 0
    # Claims parse against the evidence: every verified claim cites a chunk that was there.
    cited = {i for turn in result.transcript[0] for claim in turn.claims for i in claim.chunk_ids}
    assert cited <= {e.chunk_id for e in EVIDENCE}
    assert result.final_answer


async def test_timeout_is_a_clear_error_and_the_server_serves_on(llama_server: LocalServer) -> None:  # noqa: F811
    slow = provider(llama_server, timeout_s=0.05, attempts=2, max_tokens=200, stop=None)
    start = time.perf_counter()
    with pytest.raises(LLMError, match=r"timed out after 0\.05 s"):
        await slow.generate(ComposeRequest(QUESTION, "en", "summary", EVIDENCE))
    assert time.perf_counter() - start < 5
    assert slow.status()["state"] == "degraded" and slow.status()["errors"] == 1
    generation = await provider(llama_server).generate(ComposeRequest(QUESTION, "en", "answer", EVIDENCE))
    assert generation.text


async def test_a_wrong_model_name_is_a_clear_error_and_degraded_health(llama_server: LocalServer) -> None:  # noqa: F811
    wrong = OpenAIChatProvider([llama_server.url], "llama-3.1-70b-instruct", backoff_s=0.01)
    with pytest.raises(LLMError, match=r"serves 'gemma-3-270m-q4_k_m', not LLM_MODEL 'llama-3.1-70b-instruct'"):
        await wrong.generate(ComposeRequest(QUESTION, "en", "answer", EVIDENCE))
    status = await wrong.probe()
    assert status["state"] == "degraded" and "not LLM_MODEL 'llama-3.1-70b-instruct'" in status["last_error"]
    assert status["served_models"] == {llama_server.url: ["gemma-3-270m-q4_k_m"]}
    assert (await provider(llama_server).probe())["state"] == "ok"


async def test_the_local_provider_answers_through_the_pipeline(runtime, llama_server) -> None:  # noqa: F811
    await runtime.ingestion.ingest(corpus())
    pipeline = runtime.pipelines.get("local")
    assert (await runtime.pipelines.provider_status()) is None  # the runtime's default is extractive
    request = AnswerRequest(QUESTION, flags={"llm_validation": True})
    tokens, final = [], None
    async for event in pipeline.execute_stream(request):
        if "token" in event:
            tokens.append(event["token"])
        final = event.get("final", final)
    assert final is not None and final.provider == "local" and final.model == "gemma-3-270m-q4_k_m"
    assert not final.degraded, final.degraded_nodes
    assert "".join(tokens).strip() == final.answer
    assert final.usage.input_tokens > 0 and final.usage.output_tokens > 0
    sources = {s.chunk_id for s in final.sources}
    assert all(set(c.chunk_ids) <= sources for c in final.citations)
    assert final.validation.llm_judgement == "skipped: no LLM provider configured"  # a base model does not judge
    assert pipeline.provider.status()["started"] and pipeline.provider.status()["urls"] == [llama_server.url]


def test_serve_local_reports_the_server_it_keeps_up(llama_server: LocalServer) -> None:  # noqa: F811
    """`dtrag models serve-local` runs this: the same configuration is the same (running) server."""
    stop, seen = threading.Event(), []

    def ready(server: LocalServer) -> None:
        seen.append((server.url, server.model))
        stop.set()

    serve_local(local_config(load_settings()), on_ready=ready, stop=stop)
    assert seen == [(llama_server.url, "gemma-3-270m-q4_k_m")]
    assert httpx.get(f"{llama_server.url}/models", timeout=5).json()["data"][0]["id"] == "gemma-3-270m-q4_k_m"
