"""The query planner (meta_planner) through the real answer graph and POST /api/v1/search, on SQLite and
PostgreSQL: per-part retrieval and citations (each part with case memory when it is on), a part without
evidence, single questions untouched, the stream's plan event, the model planner (a local server speaking
the Gemini REST API) and its fallback, the plan node's timeout, and the flag's rollout semantics on search."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from apps.core import metrics
from apps.llm.extractive import NOT_FOUND
from apps.orchestration.src.answer_models import AnswerRequest
from apps.orchestration.src.planner.planner import QueryPlanner
from apps.orchestration.src.planner.search import plan_and_search
from apps.search.cases.types import CaseQuery
from apps.text.analyzer import get_analyzer
from tests.support.api import api_client
from tests.support.corpus import corpus
from tests.support.fake_gemini import Behaviour
from tests.support.pipeline import gemini_provider, pipeline

ON = {"meta_planner": True}
TWO = "What does vitamin D deficiency cause and what is PostgreSQL?"
TWO_PARTS = ["What does vitamin D deficiency cause?", "What is PostgreSQL?"]


@pytest.fixture
async def loaded(runtime):
    await runtime.ingestion.ingest(corpus())
    return runtime


def _is_plan_prompt(prompt: str) -> bool:
    return prompt.rstrip().endswith("JSON:")


async def test_each_part_is_retrieved_answered_and_cited(loaded) -> None:
    result = await pipeline(loaded).execute(AnswerRequest(TWO, flags=ON))
    plan = result.plan
    assert plan is not None and plan.planner == "rule" and plan.kind == "clauses"
    assert [p.text for p in plan.parts] == TWO_PARTS
    titles = {s.chunk_id: s.title for s in result.sources}
    assert [titles[p.hits[0]] for p in plan.parts] == ["Vitamin D", "Relational databases"]
    assert all(p.strategy == loaded.settings.default_strategy for p in plan.parts)
    # Each part's own evidence is cited by its own section, and every [n] names a source.
    cited = {c for citation in result.citations for c in citation.chunk_ids}
    assert all(set(p.hits) & cited for p in plan.parts)
    assert result.answer.startswith("1. What does vitamin D deficiency cause?\n")
    assert "\n\n2. What is PostgreSQL?\n" in result.answer
    assert "bone loss" in result.answer and "PostgreSQL is a relational database." in result.answer
    postgres = [s.chunk_id for s in result.sources].index(plan.parts[1].hits[0]) + 1
    assert f"relational database. [{postgres}]" in result.answer
    assert result.validation.grounded and not result.degraded and "plan" in result.timings_ms


async def test_korean_questions_are_planned_in_korean(loaded) -> None:
    result = await pipeline(loaded).execute(AnswerRequest("세종대왕은 누구인가? 기계 학습은 무엇인가?", flags=ON))
    assert [p.text for p in result.plan.parts] == ["세종대왕은 누구인가?", "기계 학습은 무엇인가?"]
    assert "조선의 제4대 왕" in result.answer and "인공지능의 한 분야" in result.answer
    assert result.language == "ko" and result.validation.grounded


async def test_a_part_without_evidence_says_so(loaded) -> None:
    question = "What does vitamin D deficiency cause and who won the 1998 football world cup final?"
    result = await pipeline(loaded).execute(AnswerRequest(question, flags=ON))
    found, missing = result.plan.parts
    assert found.hits and missing.hits == [] and missing.text == "Who won the 1998 football world cup final?"
    assert result.answer.endswith(f"2. {missing.text}\n{NOT_FOUND['en']}")
    assert all(NOT_FOUND["en"] not in c.sentence for c in result.citations)  # a "not found" claims nothing
    assert result.validation.grounded  # what the answer does claim is supported


async def test_a_single_question_passes_through_untouched(loaded) -> None:
    question = "What does vitamin D deficiency cause?"
    p = pipeline(loaded)
    off = await p.execute(AnswerRequest(question, flags={}))
    on = await p.execute(AnswerRequest(question, flags=ON))
    assert on.answer == off.answer and on.citations == off.citations
    assert [s.chunk_id for s in on.sources] == [s.chunk_id for s in off.sources]
    assert [p.text for p in on.plan.parts] == [question] and on.plan.kind == "single"
    assert on.plan.parts[0].hits == [s.chunk_id for s in on.sources]
    assert off.plan is None and "plan" not in off.timings_ms


async def test_the_stream_sends_the_plan_first(loaded) -> None:
    events = [e async for e in pipeline(loaded).execute_stream(AnswerRequest(TWO, flags=ON))]
    assert [part["text"] for part in events[0]["plan"]["parts"]] == TWO_PARTS
    final = events[-1]["final"]
    assert "".join(e["token"] for e in events if "token" in e).strip() == final.answer
    assert final.plan.parts[1].hits  # the final plan carries what each part retrieved


async def test_the_bandit_chooses_for_each_part(loaded) -> None:
    flags = {**ON, "soft_q_bandit": True}
    result = await pipeline(loaded).execute(AnswerRequest(TWO, flags=flags, request_id="plan-bandit-1"))
    arms = set(loaded.bandit.learner.arms)
    assert all(p.strategy in arms for p in result.plan.parts)
    first, second = [await loaded.bandit.decisions.get(i) for i in ("plan-bandit-1", "plan-bandit-1.p1")]
    assert first is not None and second is not None
    assert (first.action, second.action) == tuple(p.strategy for p in result.plan.parts)


async def test_each_part_of_a_split_question_uses_case_memory(loaded) -> None:
    # Someone asked "What is PostgreSQL?" before and said the machine-learning passage answered it.
    first = await loaded.search.search(TWO_PARTS[1], top_k=6, cases=CaseQuery("pc-1", "search"))
    ml = next(h.chunk_id for h in first.hits if h.title == "Machine learning")
    [case_id] = await loaded.cases.from_feedback(None, "pc-1", {"relevant_chunk_ids": [ml]})
    planner = QueryPlanner(get_analyzer(loaded.settings.korean_analyzer), loaded.settings.planner_max_parts)

    async def split(request_id: str, cases: bool):
        return await plan_and_search(planner, loaded.bandit, TWO, 4, None, request_id=request_id, timeout_s=5,
                                     cases=cases)

    plain = await split("pc-2", cases=False)
    assert [p.text for p in plain.plan.parts] == TWO_PARTS and plain.result.cases is None
    assert [h.title for h in plain.result.hits[:2]] == ["Vitamin D", "Relational databases"]
    # With case memory each part is searched with it: the second part, a near-duplicate of the past question,
    # takes the passage its asker rewarded as its first (and the merged context's second) place.
    found = await split("pc-3", cases=True)
    assert [p.text for p in found.plan.parts] == TWO_PARTS
    assert found.result.cases == {"selector_version": 0, "rule": True, "case_ids": [case_id], "changed": True}
    assert [h.title for h in found.result.hits[:2]] == ["Vitamin D", "Machine learning"]
    assert found.result.hits[1].case_ids == [case_id] and found.result.hits[0].case_ids == []
    await loaded.cases.leg.flush()
    logged = [await loaded.cases.store.decision(i) for i in ("pc-3", "pc-3.p1")]
    assert [d.query for d in logged] == TWO_PARTS and [d.changed for d in logged] == [False, True]
    # So is each part of an answer.
    answered = await pipeline(loaded).execute(AnswerRequest(TWO, flags={**ON, "neural_case_selector": True},
                                                            request_id="pc-4"))
    assert answered.plan is not None and len(answered.plan.parts) == 2
    assert answered.cases is not None and answered.cases.changed and answered.cases.case_ids == [case_id]
    assert all(s.case_ids is not None for s in answered.sources)
    await loaded.cases.leg.flush()
    assert (await loaded.cases.store.decision("pc-4.p1")).query == TWO_PARTS[1]


async def test_a_model_plans_when_configured(loaded, gemini) -> None:
    gemini.route = lambda prompt: (Behaviour(text='```json\n{"parts": ["What does vitamin D deficiency cause?", '
                                                  '"What is PostgreSQL?"]}\n```') if _is_plan_prompt(prompt)
                                   else Behaviour(text="It is described in the source [1]."))
    question = "Tell me what vitamin D deficiency causes, and something about PostgreSQL"
    result = await pipeline(loaded, gemini_provider(gemini)).execute(AnswerRequest(question, flags=ON))
    assert result.plan.planner == "model" and [p.text for p in result.plan.parts] == TWO_PARTS
    assert result.plan.fell_back is None and all(p.hits for p in result.plan.parts)
    assert result.usage.input_tokens >= 3 * 120  # the plan's call and both parts' answers
    # A question with no compound cue costs no model call.
    gemini.requests.clear()
    single = await pipeline(loaded, gemini_provider(gemini)).execute(AnswerRequest("What is PostgreSQL?", flags=ON))
    assert single.plan.planner == "rule" and not any(_is_plan_prompt(str(r["body"])) for r in gemini.requests)


@pytest.mark.parametrize("reply", ["Sure! The question has two parts: vitamin D and PostgreSQL.",
                                   '{"parts": ["What is the capital of Peru?", "Who painted the Mona Lisa?"]}',
                                   '{"parts": []}'])
async def test_a_malformed_model_plan_falls_back_to_the_rules(loaded, gemini, reply: str) -> None:
    gemini.route = lambda prompt: (Behaviour(text=reply) if _is_plan_prompt(prompt)
                                   else Behaviour(text="It is described in the source [1]."))
    before = sum(metrics.PLANNER_FALLBACKS.labels(reason=r)._value.get() for r in ("malformed", "invalid", "error"))
    result = await pipeline(loaded, gemini_provider(gemini)).execute(AnswerRequest(TWO, flags=ON))
    assert result.plan.planner == "rule" and [p.text for p in result.plan.parts] == TWO_PARTS
    assert result.plan.fell_back and not result.degraded
    after = sum(metrics.PLANNER_FALLBACKS.labels(reason=r)._value.get() for r in ("malformed", "invalid", "error"))
    assert after == before + 1


async def test_the_plan_node_times_out_cleanly(loaded, gemini) -> None:
    gemini.route = lambda prompt: (Behaviour(delay_s=2.0, text='{"parts": ["x"]}') if _is_plan_prompt(prompt)
                                   else Behaviour(text="Vitamin D deficiency is associated with bone loss [1]."))
    p = pipeline(loaded, gemini_provider(gemini), planner_timeout_ms=300)
    result = await p.execute(AnswerRequest(TWO, flags=ON))
    assert {"node": "plan", "reason": "timed out"} in [d.model_dump() for d in result.degraded_nodes]
    assert result.plan is None and result.sources and "bone loss" in result.answer  # answered whole
    assert result.timings_ms["plan"] < 1500


async def test_search_plans_on_request_and_by_flag(settings) -> None:
    async with api_client(settings) as api:
        await api.runtime.ingestion.ingest(corpus())
        read = api.headers("read")

        async def search(body: dict, headers: dict | None = None) -> dict:
            response = await api.client.post("/api/v1/search", json=body, headers={**read, **(headers or {})})
            assert response.status_code == 200, response.text
            return {**response.json(), "variant": response.headers.get("X-Pipeline-Variant")}

        planned = await search({"q": TWO, "final_topk": 4, "plan": True})
        plan = planned["plan"]
        assert [p["text"] for p in plan["parts"]] == TWO_PARTS and plan["planner"] == "rule"
        ids = [h["chunk_id"] for h in planned["hits"]]
        assert [h["title"] for h in planned["hits"][:2]] == ["Vitamin D", "Relational databases"]  # a share each
        assert all(p["hits"] and set(p["hits"]) <= set(ids) for p in plan["parts"]) and len(ids) == 4
        assert (await search({"q": TWO, "plan": False}))["plan"] is None
        whole = await search({"q": "What is PostgreSQL?", "plan": True})
        plain = await search({"q": "What is PostgreSQL?"})
        assert len(whole["plan"]["parts"]) == 1 and plain["plan"] is None
        assert [h["chunk_id"] for h in whole["hits"]] == [h["chunk_id"] for h in plain["hits"]]

        # The flag, as every flag: on for an allowlisted user (the new variant), off by the kill switch.
        put = await api.client.put("/api/v1/admin/feature-flags/meta_planner", headers=api.headers(),
                                   json={"user_ids": ["planner-user"], "reason": "planner canary"})
        assert put.status_code == 200
        allowed = await search({"q": TWO}, {"X-User-Id": "planner-user"})
        assert allowed["plan"] is not None and allowed["variant"] == "new"
        assert (await search({"q": TWO}, {"X-User-Id": "someone-else"}))["plan"] is None
        await api.client.put("/api/v1/admin/feature-flags/meta_planner", headers=api.headers(),
                             json={"kill": True, "reason": "stop planning"})
        assert (await search({"q": TWO}, {"X-User-Id": "planner-user"}))["plan"] is None


def test_the_original_projects_planner_names_from_a_plain_script(tmp_path) -> None:
    env = {**os.environ, "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'script.db'}"}
    script = """
import asyncio, json
from apps.orchestration.src.meta_planner import analyze_complexity, generate_plan

async def main():
    return [await analyze_complexity("What is BM25?"), await analyze_complexity("Compare BM25 and dense retrieval"),
            await generate_plan("What is BM25 and how does dense retrieval work?", "medium", timeout=5.0)]

print(json.dumps(asyncio.run(main())))
"""
    done = subprocess.run([sys.executable, "-c", script], cwd=Path(__file__).resolve().parents[2], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    simple, compared, plan = json.loads(done.stdout.strip().splitlines()[-1])
    assert simple == {"complexity": "simple", "strategy": "direct", "parts": ["What is BM25?"], "kind": "single"}
    assert compared["complexity"] == "medium" and compared["parts"] == ["BM25", "dense retrieval"]
    assert plan["strategy"] == "multi_step" and plan["planner"] == "rule" and plan["tools"] == []
    assert plan["parts"] == ["What is BM25?", "How does dense retrieval work?"] and "plan" in plan["steps"]
