"""Debate as an answer mode of the real pipeline, on both backends: `POST /answer` with `"mode": "debate"`
or the `debate_mode` flag, its answer cited and validated, round events when streamed, the single pass
served when it falls back, and what it cost in the metrics and the decision log."""

from __future__ import annotations

import json

import pytest

from apps.ingestion.documents import SourceDocument
from apps.llm.gemini import GeminiProvider
from apps.orchestration.src.answer_graph import AnswerPipeline
from apps.orchestration.src.answer_models import AnswerRequest
from apps.orchestration.src.debate import CONFLICT_HEADER
from apps.text.analyzer import get_analyzer
from tests.support.api import Api, api_client
from tests.support.corpus import corpus
from tests.support.fake_gemini import Behaviour, FakeGemini

QUESTION = "What does vitamin D deficiency cause?"
# A misinformation copy of the vitamin D passage, its answer swapped: the debate must not pass it off silently.
PLANTED = SourceDocument(
    text="Vitamin D deficiency is associated with hair growth. Sunlight exposure helps the skin produce vitamin D.",
    title="Vitamin D facts", external_id="planted-vitamin-d", origin="test")


@pytest.fixture
async def api(settings):
    async with api_client(settings) as client:
        await client.runtime.ingestion.ingest(corpus())
        yield client


async def _answer(api: Api, **body) -> dict:
    response = await api.client.post("/answer", headers=api.headers("read"), json={"q": QUESTION, **body})
    assert response.status_code == 200, response.text
    return response.json()


async def test_debate_mode_answers_with_its_debate(api: Api) -> None:
    plain = await _answer(api)
    assert plain["debate"] is None
    debated = await _answer(api, mode="debate")
    debate = debated["debate"]
    assert debate["stop_reason"] in ("consensus", "max_rounds") and 1 <= debate["rounds"] <= 2
    assert debate["llm_calls"] == 0 and not debate["fell_back"]  # offline: extractive agents, no model
    # DEBATE_AGENTS agents a round, each on its own share: never more agents than passages to share
    assert [len(r) for r in debate["agents"]] == [min(2, len(debated["sources"]))] * debate["rounds"]
    assert all(a["answer"] and a["view"] for r in debate["agents"] for a in r)
    assert "bone loss" in debated["answer"] and debated["validation"]["grounded"]
    assert debated["citations"] and all(c["chunk_ids"] for c in debated["citations"])
    assert "debate" in debated["timings_ms"] and debated["timings_ms"]["cite"] > 0


async def test_the_flag_turns_debate_on_for_answer_mode(api: Api) -> None:
    r = await api.client.put("/api/v1/admin/feature-flags/debate_mode", headers=api.headers(),
                             json={"enabled": True, "reason": "test"})
    assert r.status_code == 200
    flagged = await _answer(api)
    assert flagged["debate"] is not None
    assert (await _answer(api, mode="summary"))["debate"] is None  # a summary is not a question to settle


async def test_a_planted_contradiction_is_reported_not_passed_off(api: Api) -> None:
    await api.runtime.ingestion.ingest([PLANTED])
    debated = await _answer(api, mode="debate", final_topk=8)
    assert debated["debate"]["conflict"]
    lines = debated["answer"].splitlines()
    assert lines[0] == CONFLICT_HEADER["en"] and any("bone loss" in line for line in lines[1:])
    assert any("hair growth" in line for line in lines[1:])
    # The header cites nothing and stays out of validation; every side carries its own citation.
    assert all(c["sentence"] != CONFLICT_HEADER["en"] and c["chunk_ids"] for c in debated["citations"])


async def test_stream_sends_a_round_event_per_round(api: Api) -> None:
    async with api.client.stream("POST", "/answer", headers=api.headers("read"),
                                 json={"q": QUESTION, "mode": "debate", "stream": True}) as response:
        body = "".join([chunk async for chunk in response.aiter_text()])
    events = [block.split("\n") for block in body.strip().split("\n\n")]
    names = [e[0].removeprefix("event: ") for e in events]
    final = json.loads(events[-1][1].removeprefix("data: "))
    rounds = [json.loads(e[1].removeprefix("data: ")) for e in events if e[0] == "event: round"]
    assert names[-1] == "final" and len(rounds) == final["debate"]["rounds"] >= 1
    assert [r["round"] for r in rounds] == list(range(1, len(rounds) + 1))
    assert names.index("round") > names.index("token")  # the single pass streams first, then the debate


async def test_debates_are_counted_in_prometheus_and_the_decision_log(api: Api) -> None:
    await api.client.put("/api/v1/admin/feature-flags/soft_q_bandit", headers=api.headers(),
                         json={"enabled": True, "reason": "test"})
    response = await api.client.post("/answer", headers={**api.headers("read"), "X-Request-ID": "debated-1"},
                                     json={"q": QUESTION, "mode": "debate"})
    assert response.status_code == 200
    text = (await api.client.get("/metrics")).text
    assert 'dtrag_debates_total{stop_reason="' in text and "dtrag_debate_rounds_total" in text
    row = await api.runtime.bandit.decisions.get("debated-1")
    assert row is not None and row.debated and row.debate_llm_calls == 0 and row.debate_cost_usd == 0.0


def _gemini_pipeline(runtime, server: FakeGemini, **settings) -> AnswerPipeline:
    s = runtime.settings.model_copy(update=settings)
    provider = GeminiProvider("test-key", "gemini-2.5-flash", base_url=server.url, backoff_s=0.01,
                              input_cost_per_mtok=0.30, output_cost_per_mtok=2.50)
    return AnswerPipeline(runtime.bandit, provider, get_analyzer(s.korean_analyzer), s, runtime.flags)


async def test_gemini_agents_debate_and_their_tokens_are_counted(runtime, gemini) -> None:
    await runtime.ingestion.ingest(corpus())
    gemini.default = Behaviour(text="Vitamin D deficiency causes bone loss [1].")
    result = await _gemini_pipeline(runtime, gemini).execute(AnswerRequest(QUESTION, mode="debate", flags={}))
    agents = min(2, len(result.sources))
    assert result.debate is not None and result.debate.stop_reason == "consensus" and result.debate.rounds == 1
    assert result.debate.llm_calls == agents and len(gemini.requests) == 1 + agents  # the single pass, the agents
    calls = 1 + agents
    assert result.usage.input_tokens == calls * 120 and result.usage.cost_usd == pytest.approx(calls * 6.6e-05)
    assert not result.degraded and "bone loss" in result.answer


async def test_a_debate_that_times_out_serves_the_single_pass(runtime, gemini) -> None:
    await runtime.ingestion.ingest(corpus())
    gemini.script = [Behaviour(text="Vitamin D deficiency causes bone loss [1].")]  # the single pass
    gemini.default = Behaviour(kind="slow", delay_s=5, text="Vitamin D deficiency causes bone loss [1].")
    pipeline = _gemini_pipeline(runtime, gemini, debate_timeout_ms=600)
    result = await pipeline.execute(AnswerRequest(QUESTION, mode="debate", flags={}))
    assert result.answer == "Vitamin D deficiency causes bone loss [1]."
    # Each agent's call timed out (its share of the debate's time), or the debate's whole time ran out.
    assert result.debate is not None and result.debate.fell_back
    assert result.debate.stop_reason in ("timeout", "error")
    assert [d.node for d in result.degraded_nodes] == ["debate"] and "timeout" in result.degraded_nodes[0].reason
    assert result.timings_ms["debate"] < 1500


async def test_a_failing_model_is_counted_not_quoted_in_degraded_nodes(runtime, gemini) -> None:
    await runtime.ingestion.ingest(corpus())
    gemini.script = [Behaviour(text="Vitamin D deficiency causes bone loss [1].")]  # the single pass
    gemini.default = Behaviour(kind="status", status=400)  # the agents' calls: "scripted failure"
    result = await _gemini_pipeline(runtime, gemini).execute(AnswerRequest(QUESTION, mode="debate", flags={}))
    assert result.debate is not None and result.debate.fell_back
    [node] = result.degraded_nodes
    assert node.node == "debate" and node.reason.startswith(f"{result.debate.stop_reason} (model calls: ")
    assert "failed" in node.reason and "scripted" not in node.reason and "400" not in node.reason

