"""The answer pipeline: a real LangGraph graph over a real database, both backends, with a local
server speaking the Gemini REST API for the LLM paths."""

from __future__ import annotations

import json
import time

import pytest

from apps.orchestration.src.answer_models import AnswerRequest
from tests.support.api import api_client
from tests.support.corpus import corpus
from tests.support.fake_gemini import Behaviour
from tests.support.pipeline import gemini_provider, pipeline

ALL_OFF: dict[str, bool] = {}


@pytest.fixture
async def loaded(runtime):
    await runtime.ingestion.ingest(corpus())
    return runtime


async def test_graph_is_a_real_state_graph(loaded) -> None:
    p = pipeline(loaded)
    nodes = set(p.graph.get_graph().nodes)
    assert {"intent", "retrieve", "compose", "cite", "track_evidence", "validate", "judge", "respond"} <= nodes


async def test_english_answer_with_citations(loaded) -> None:
    result = await pipeline(loaded).execute(AnswerRequest("What does vitamin D deficiency cause?", flags=ALL_OFF))
    assert result.language == "en" and result.model == "extractive-v1"
    assert "bone loss" in result.answer
    assert result.sources[0].title == "Vitamin D"
    cited = {c for citation in result.citations for c in citation.chunk_ids}
    assert result.sources[0].chunk_id in cited
    assert result.validation.grounded and not result.degraded
    assert set(result.timings_ms) >= {"intent", "retrieve", "compose", "cite", "validate", "total"}
    assert "track_evidence" not in result.timings_ms and "judge" not in result.timings_ms


async def test_korean_answer_is_korean(loaded) -> None:
    result = await pipeline(loaded).execute(AnswerRequest("훈민정음은 언제 창제되었나?", flags=ALL_OFF))
    assert result.language == "ko" and "1443년" in result.answer
    assert result.question_type == "when"


async def test_no_evidence_is_an_honest_not_found(loaded) -> None:
    en = await pipeline(loaded).execute(AnswerRequest("Who won the 1998 football world cup final?", flags=ALL_OFF))
    assert en.answer == "The documents do not contain an answer to this question."
    assert en.sources == [] and not en.validation.grounded
    ko = await pipeline(loaded).execute(AnswerRequest("월드컵 결승전 우승팀은?", flags=ALL_OFF))
    assert ko.answer == "문서에서 이 질문에 대한 답을 찾을 수 없습니다."


async def test_flags_change_the_path(loaded) -> None:
    p = pipeline(loaded)
    q = "What does vitamin D deficiency cause?"
    tracked = await p.execute(AnswerRequest(q, flags={"evidence_tracking": True, "llm_validation": True}))
    assert "track_evidence" in tracked.timings_ms and "judge" in tracked.timings_ms
    assert tracked.validation.llm_judgement.startswith("skipped")
    assert all(c.support >= 0.5 for c in tracked.citations)


async def test_gemini_answer_usage_and_validation(loaded, gemini) -> None:
    gemini.script = [Behaviour(text="Vitamin D deficiency causes bone loss [1]."), Behaviour(text="YES")]
    p = pipeline(loaded, gemini_provider(gemini))
    result = await p.execute(AnswerRequest("What does vitamin D deficiency cause?",
                                           flags={"evidence_tracking": True, "llm_validation": True}))
    assert result.provider == "gemini" and result.answer == "Vitamin D deficiency causes bone loss [1]."
    # The compose call and the judge's call, both counted in usage and cost.
    assert result.usage.model_dump() == {"input_tokens": 240, "output_tokens": 24, "cost_usd": pytest.approx(1.32e-04)}
    assert result.validation.model_dump() == {"grounded": True, "unsupported_sentences": [], "llm_judgement": "grounded"}
    prompt = gemini.requests[0]["body"]["contents"][0]["parts"][0]["text"]
    assert "Vitamin D" in prompt and "Answer the question in English" in prompt
    assert gemini.requests[0]["key"] == "test-key"


async def test_korean_prompt_for_korean_question(loaded, gemini) -> None:
    gemini.script = [Behaviour(text="세종대왕은 1443년에 훈민정음을 창제하였다 [1].")]
    result = await pipeline(loaded, gemini_provider(gemini)).execute(AnswerRequest("훈민정음은 언제 창제되었나?", flags={}))
    assert "한국어로" in gemini.requests[0]["body"]["contents"][0]["parts"][0]["text"]
    assert result.language == "ko" and "1443년" in result.answer


async def test_hallucination_detection_marks_and_removes(loaded, gemini) -> None:
    text = "Vitamin D deficiency causes bone loss [1]. The moon is made of green cheese [1]."
    flags = {"hallucination_detection": True}
    gemini.script = [Behaviour(text=text)]
    marked = await pipeline(loaded, gemini_provider(gemini)).execute(AnswerRequest("What does vitamin D do?", flags=flags))
    assert marked.validation.unsupported_sentences == ["The moon is made of green cheese."]
    assert not marked.validation.grounded and "cheese" in marked.answer
    gemini.script = [Behaviour(text=text)]
    removed = await pipeline(loaded, gemini_provider(gemini), remove_unsupported=True).execute(
        AnswerRequest("What does vitamin D do?", flags=flags))
    assert "cheese" not in removed.answer and "bone loss" in removed.answer


@pytest.mark.parametrize("failure", [
    [Behaviour("status", status=500)] * 3,
    [Behaviour("malformed")],
    [Behaviour("status", status=429)] * 3,
])
async def test_provider_errors_degrade_to_extractive(loaded, gemini, failure) -> None:
    gemini.script = list(failure)
    result = await pipeline(loaded, gemini_provider(gemini)).execute(
        AnswerRequest("What does vitamin D deficiency cause?", flags={}))
    assert result.degraded and result.degraded_nodes[0].node == "compose"
    assert result.provider == "extractive" and "bone loss" in result.answer


async def test_rate_limit_is_retried(loaded, gemini) -> None:
    gemini.script = [Behaviour("status", status=429), Behaviour(text="Bone loss [1].")]
    result = await pipeline(loaded, gemini_provider(gemini)).execute(AnswerRequest("What does vitamin D cause?", flags={}))
    assert not result.degraded, result.degraded_nodes
    assert result.answer == "Bone loss [1]." and len(gemini.requests) == 2


async def test_slow_provider_is_cut_off_by_the_node_timeout(loaded, gemini) -> None:
    gemini.default = Behaviour(delay_s=5)
    p = pipeline(loaded, gemini_provider(gemini), node_timeout_ms=500, answer_deadline_ms=3000)
    start = time.perf_counter()
    result = await p.execute(AnswerRequest("What does vitamin D deficiency cause?", flags={}))
    assert time.perf_counter() - start < 2.5
    assert [d.model_dump() for d in result.degraded_nodes] == [{"node": "compose", "reason": "timed out"}]
    assert "bone loss" in result.answer


async def test_total_deadline_bounds_wall_time(loaded, gemini) -> None:
    gemini.default = Behaviour(delay_s=5)
    p = pipeline(loaded, gemini_provider(gemini), node_timeout_ms=10000, answer_deadline_ms=1200)
    start = time.perf_counter()
    result = await p.execute(AnswerRequest("What does vitamin D deficiency cause?",
                                           flags={"llm_validation": True}))
    assert time.perf_counter() - start < 2.5
    assert result.degraded and any(d.node == "compose" for d in result.degraded_nodes)


async def test_stream_emits_tokens_then_final(loaded) -> None:
    events = [e async for e in pipeline(loaded).execute_stream(AnswerRequest("What does vitamin D cause?", flags={}))]
    assert "token" in events[0] and "final" in events[-1]
    tokens = "".join(e["token"] for e in events if "token" in e)
    assert tokens.strip() == events[-1]["final"].answer


# --- HTTP -----------------------------------------------------------------------------------------

async def test_answer_endpoint_json_and_sse(settings) -> None:
    async with api_client(settings) as api:
        await api.runtime.ingestion.ingest(corpus())
        for path in ("/answer", "/api/v1/answer"):
            r = await api.client.post(path, headers=api.headers("read"), json={"q": "What does vitamin D cause?"})
            assert r.status_code == 200, r.text
            body = r.json()
            assert set(body) >= {"question", "answer", "sources", "citations", "confidence", "validation", "model",
                                 "language", "strategy", "timings_ms", "degraded", "request_id"}
            assert body["sources"] and body["request_id"] == r.headers["X-Request-ID"]
        r = await api.client.post("/answer", headers=api.headers("read"),
                                  json={"q": "세종대왕은 무엇을 창제했나?", "stream": True, "mode": "summary"})
        assert r.headers["content-type"].startswith("text/event-stream")
        events = [block for block in r.text.split("\n\n") if block.strip()]
        kinds = [block.split("\n")[0].removeprefix("event: ") for block in events]
        assert kinds[0] == "token" and kinds[-1] == "final"
        final = json.loads(events[-1].split("\n", 1)[1].removeprefix("data: "))
        assert final["language"] == "ko" and final["sources"] and final["citations"]


@pytest.mark.parametrize(("body", "fragment"), [
    ({"q": ""}, "q"),
    ({"q": "x", "mode": "poem"}, "mode"),
    ({"q": "x" * 5000}, "q"),
    ({"q": "x", "provider": "gemini"}, "GEMINI_API_KEY"),
    ({"q": "x", "strategy": "magic"}, "unknown strategy"),
    ({"q": "x", "final_topk": 0}, "final_topk"),
])
async def test_answer_bad_input(settings, body, fragment) -> None:
    async with api_client(settings) as api:
        r = await api.client.post("/answer", headers=api.headers("read"), json=body)
        assert r.status_code == 422 and fragment in r.json()["detail"], r.text
        assert (await api.client.post("/answer", json={"q": "x"})).status_code == 401


async def test_debug_pipeline_logs_every_step(loaded, caplog) -> None:
    caplog.set_level("INFO", logger="apps.orchestration.src.answer_graph")
    await pipeline(loaded, debug_pipeline=True).execute(AnswerRequest("What causes bone loss?"))
    steps = [r.node for r in caplog.records if r.getMessage() == "pipeline step"]
    assert steps[:3] == ["intent", "retrieve", "compose"] and "validate" in steps
    caplog.clear()
    await pipeline(loaded).execute(AnswerRequest("What causes bone loss?"))
    assert not [r for r in caplog.records if r.getMessage() == "pipeline step"]
