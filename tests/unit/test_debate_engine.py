"""The debate engine: protocol, grounding, timing and budget, the offline default, and Gemini agents
against a local server speaking its REST API."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

from apps.llm.base import Evidence, Generation, Usage
from apps.llm.extractive import NOT_FOUND
from apps.llm.gemini import GeminiProvider
from apps.orchestration.src.debate import CONFLICT_HEADER, DebateAgent, DebateEngine, Turn, should_debate
from apps.orchestration.src.debate.agreement import assess
from apps.orchestration.src.debate.claims import verify
from apps.orchestration.src.debate.context import DebateContext
from apps.orchestration.src.debate.vote import weighted_vote
from apps.text.analyzer import get_analyzer
from tests.support.fake_gemini import Behaviour, FakeGemini

QUESTION = "What is kimchi?"
KIMCHI = Evidence(11, "d1", "Kimchi", "Kimchi is a traditional Korean dish of fermented cabbage. "
                  "It is served with most meals.", 1.0)
MAKING = Evidence(12, "d2", "Korean food", "Kimchi is made from fermented cabbage and radish with chili. "
                  "Families make it in autumn.", 0.8)
RICE = Evidence(13, "d3", "Rice", "Rice is a staple food grown in paddies across Asia.", 0.3)
PLANTED = Evidence(14, "d4", "Kimchi", "Kimchi is a traditional Japanese dish of fermented cabbage. "
                   "It is served with most meals.", 0.95)


def agent_of(prompt: str) -> int | None:
    """Which agent a prompt is for (1-based); None for the judge."""
    marker = "You are agent "
    return int(prompt.split(marker, 1)[1].split(" ", 1)[0]) if marker in prompt else None


class Scripted:
    """An async model whose reply is a function of the prompt, after a delay; counts cancellations."""

    name = "scripted"
    model = "scripted-1"

    def __init__(self, reply: Callable[[str], str], delay_s: float = 0.0) -> None:
        self.reply = reply
        self.delay_s = delay_s
        self.prompts: list[str] = []
        self.cancelled = 0

    async def complete(self, prompt: str, max_tokens: int) -> Generation:
        self.prompts.append(prompt)
        try:
            await asyncio.sleep(self.delay_s)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        return Generation(self.reply(prompt), self.name, self.model, Usage(100, 10, 0.001))


def by_agent(*answers: str, judge: str = "Kimchi is fermented cabbage [1].") -> Callable[[str], str]:
    def reply(prompt: str) -> str:
        agent = agent_of(prompt)
        return judge if agent is None else answers[agent - 1]
    return reply


# --- the offline default -----------------------------------------------------------------------------

async def test_offline_default_reaches_consensus_from_different_views() -> None:
    result = await DebateEngine().run_debate(QUESTION, [KIMCHI, MAKING, RICE])
    assert result.stop_reason == "consensus" and not result.fell_back and not result.conflict
    assert result.llm_calls == 0 and result.calls == 2 * result.rounds and result.usage.input_tokens == 0
    views = [set(t.view) for t in result.transcript[0]]
    assert views == [{11, 13}, {12}]  # disjoint round-robin shares
    assert "fermented cabbage" in result.final_answer
    assert result.citations and all(c.chunk_ids and c.support >= 0.5 for c in result.citations)
    assert len(result.affirmative_answers) == len(result.critical_answers) == result.rounds


async def test_offline_debate_reports_a_planted_copy_as_a_conflict_with_both_citations() -> None:
    result = await DebateEngine().run_debate(QUESTION, [KIMCHI, PLANTED, RICE], max_rounds=2)
    assert result.conflict and result.stop_reason == "max_rounds" and result.judge == "vote" and result.rounds == 2
    assert result.final_answer.startswith(CONFLICT_HEADER["en"])
    assert "Korean dish of fermented cabbage. [1]" in result.final_answer
    assert "Japanese dish of fermented cabbage. [2]" in result.final_answer
    second = result.transcript[1]
    assert [c.chunk_ids for c in second[0].rebutted] == [(14,)]  # each refuses what its source contradicts
    assert [c.chunk_ids for c in second[1].rebutted] == [(11,)]
    vote = await DebateEngine().run_vote(QUESTION, [KIMCHI, PLANTED, RICE])
    assert not vote.conflict and vote.rounds == 1 and vote.judge == "vote"  # a vote picks one side silently


async def test_offline_korean_conflict() -> None:
    gold = Evidence(1, "a", "훈민정음", "훈민정음은 1443년 세종대왕이 창제하였다. 1446년에 반포되었다.", 1.0)
    copy = Evidence(2, "b", "훈민정음", "훈민정음은 1517년 세종대왕이 창제하였다. 1446년에 반포되었다.", 0.97)
    result = await DebateEngine().run_debate("훈민정음은 언제 창제되었나?", [gold, copy])
    assert result.language == "ko" and result.conflict
    assert result.final_answer.startswith(CONFLICT_HEADER["ko"])
    assert "1443년" in result.final_answer and "1517년" in result.final_answer


def test_a_claim_that_another_agents_evidence_contradicts_blocks_consensus() -> None:
    gold = Evidence(1, "a", "Apollo 11", "Apollo 11 landed on the Moon in July 1969. "
                    "Its lunar module was named Eagle after the bird.", 1.0)
    copy = Evidence(2, "b", "Apollo 11", "Apollo 11 landed on the Moon in July 1969. "
                    "Its lunar module was named Falcon after the bird.", 0.99)
    question = "When did Apollo 11 land on the Moon, and what was its lunar module named?"
    ctx = DebateContext.build(get_analyzer("bigram"), question, (gold, copy), 0.5)
    landed, eagle = "Apollo 11 landed on the Moon in July 1969.", "Its lunar module was named Eagle after the bird."
    first = Turn(0, "affirmative", 1, (1,), claims=[verify(ctx, landed, (1,)), verify(ctx, eagle, (1,))])
    second = Turn(1, "critical", 1, (2,), claims=[verify(ctx, landed, (2,))])
    assessment = assess(ctx, [first, second], threshold=0.5)
    assert assessment.agreement >= 0.5 and not assessment.consensus  # they agree on what they quoted...
    assert [(a.text, b.text) for a, b in assessment.conflicts] == [  # ...but the copy says otherwise
        ("Its lunar module was named Eagle after the bird.", "Its lunar module was named Falcon after the bird.")]
    verdict = weighted_vote(ctx, [first, second], 0.5, report_conflicts=True)
    assert verdict.conflict and {c.chunk_ids for c in verdict.sides} == {(1,), (2,)}


async def test_no_evidence_is_an_honest_not_found() -> None:
    result = await DebateEngine().run_debate(QUESTION, [])
    assert result.final_answer == NOT_FOUND["en"] and result.rounds == 0 and result.calls == 0


async def test_the_original_api_takes_dict_chunks() -> None:
    chunks = [{"chunk_id": "a1", "title": "Kimchi", "text": KIMCHI.text}, {"text": MAKING.text}]
    result = await DebateEngine().run_debate(QUESTION, chunks, max_rounds=2, timeout=10.0)
    assert "fermented cabbage" in result.final_answer and result.elapsed_time < 10
    agent = DebateAgent(role="critical", max_tokens=500)
    first = await agent.generate_answer(QUESTION, chunks)
    assert first.startswith("Kimchi is") and ("[1]" in first or "[2]" in first)
    again = await agent.generate_answer(QUESTION, chunks, own_previous_answer=first,
                                        opponent_answer="Kimchi is made from fermented cabbage and radish [2].")
    assert "fermented cabbage" in again


# --- protocol, grounding, time and budget, with a scripted model --------------------------------------

async def test_agree_at_once_stops_after_round_one() -> None:
    model = Scripted(by_agent("Kimchi is fermented cabbage [1].", "Kimchi is fermented cabbage [2].", "NOT FOUND"))
    result = await DebateEngine(model, agents=3).run_debate(QUESTION, [KIMCHI, MAKING, RICE], max_rounds=3)
    assert result.stop_reason == "consensus" and result.rounds == 1 and result.llm_calls == 3
    assert result.transcript[0][2].abstained and result.agreement == 1.0
    assert result.usage.input_tokens == 300 and result.usage.output_tokens == 30
    assert result.usage.cost_usd == pytest.approx(0.003)


async def test_max_rounds_is_honoured_and_calls_are_counted() -> None:
    model = Scripted(by_agent("Kimchi is fermented cabbage [1].", "Kimchi is made with chili [2]."))
    result = await DebateEngine(model).run_debate(QUESTION, [KIMCHI, MAKING], max_rounds=3)
    assert result.rounds == 3 and result.stop_reason == "max_rounds" and result.judge == "llm"
    assert result.llm_calls == len(model.prompts) == 2 * 3 + 1
    assert agent_of(model.prompts[-1]) is None  # the judge, once, last
    round_two = {agent_of(p): p for p in model.prompts[2:4]}
    assert "Agent 2:\n- Kimchi is made with chili. [2]" in round_two[1]  # the other's verified claim, quoted
    assert "Agent 1:\n- Kimchi is fermented cabbage. [1]" in round_two[2]
    assert result.final_answer == "Kimchi is fermented cabbage. [1]"


async def test_unsupported_claims_are_struck_before_the_next_round_and_from_the_answer() -> None:
    liar = "Kimchi is fermented cabbage [1]. Kimchi was invented on the moon in 1999 [1]."
    model = Scripted(by_agent(liar, "Kimchi is fermented cabbage and radish [2]."))
    result = await DebateEngine(model).run_debate(QUESTION, [KIMCHI, MAKING], max_rounds=2)
    first = result.transcript[0][0]
    assert [c.text for c in first.struck] == ["Kimchi was invented on the moon in 1999."]
    assert [c.text for c in first.verified] == ["Kimchi is fermented cabbage."]
    round_two_prompts = model.prompts[2:4]
    assert all("moon" not in p.split("Question:", 1)[1] for p in round_two_prompts if agent_of(p) == 2)
    assert "moon" not in result.final_answer


async def test_agents_of_a_round_run_concurrently() -> None:
    agree = Scripted(by_agent("Kimchi is fermented cabbage [1].", "Kimchi is fermented cabbage [2].",
                              "Kimchi is fermented cabbage [2]."), delay_s=0.3)
    start = time.perf_counter()
    result = await DebateEngine(agree, agents=3).run_debate(QUESTION, [KIMCHI, MAKING, RICE])
    assert result.rounds == 1 and time.perf_counter() - start < 0.6  # one call's time, not three
    disagree = Scripted(by_agent("Kimchi is fermented cabbage [1].", "Kimchi is made with chili [2].",
                                 "Rice is a staple food [3]."), delay_s=0.3)
    start = time.perf_counter()
    result = await DebateEngine(disagree, agents=3).run_debate(QUESTION, [KIMCHI, MAKING, RICE], max_rounds=2)
    elapsed = time.perf_counter() - start
    assert result.llm_calls == 7 and result.judge == "llm"
    assert 0.85 < elapsed < 1.4  # two rounds and the judge: 0.9 s, where the calls' sum is 2.1 s


async def test_total_timeout_returns_in_bound_and_cancels_calls_in_flight() -> None:
    model = Scripted(by_agent("Kimchi is fermented cabbage [1].", "Kimchi is fermented cabbage [2]."), delay_s=5)
    start = time.perf_counter()
    result = await DebateEngine(model, timeout_s=0.4, call_timeout_s=5).run_debate(QUESTION, [KIMCHI, MAKING])
    assert time.perf_counter() - start < 0.8
    assert result.stop_reason == "timeout" and result.fell_back and result.rounds == 0
    assert model.cancelled == 2 and result.llm_calls == 2  # cancelled calls were still made
    assert "fermented cabbage" in result.final_answer  # the single pass stands in


async def test_a_token_budget_stops_the_debate() -> None:
    model = Scripted(by_agent("Kimchi is fermented cabbage [1].", "Kimchi is made with chili [2]."))
    broke = await DebateEngine(model, max_tokens=50).run_debate(QUESTION, [KIMCHI, MAKING])
    assert broke.stop_reason == "budget" and broke.llm_calls == 0 and broke.fell_back
    assert "fermented cabbage" in broke.final_answer
    full = await DebateEngine(model, max_tokens=1 << 30, agent_max_tokens=100).run_debate(QUESTION, [KIMCHI, MAKING])
    round_one = sum(len(p) // 2 + 1 + 100 for p in model.prompts[-5:-3])  # what round one reserves
    assert full.llm_calls == 5
    tight = await DebateEngine(model, max_tokens=round_one, agent_max_tokens=100).run_debate(QUESTION, [KIMCHI, MAKING])
    assert tight.stop_reason == "budget" and tight.rounds == 2 and tight.llm_calls < 5
    assert tight.usage.input_tokens + tight.usage.output_tokens <= round_one


def test_trigger() -> None:
    assert should_debate("always", confidence=0.99)
    assert not should_debate("uncertain", confidence=0.9)
    assert should_debate("uncertain", confidence=0.9, unsupported=1)
    assert should_debate("uncertain", confidence=0.3) and should_debate("uncertain", 0.9, legs_agree=False)
    assert DebateEngine(trigger="uncertain").should_debate(confidence=0.2)


# --- Gemini agents against the local server -----------------------------------------------------------

def gemini_provider(server: FakeGemini) -> GeminiProvider:
    return GeminiProvider("test-key", "gemini-2.5-flash", base_url=server.url, backoff_s=0.01,
                          input_cost_per_mtok=0.30, output_cost_per_mtok=2.50)


def route(*behaviours: Behaviour, judge: Behaviour | None = None) -> Callable[[str], Behaviour | None]:
    def pick(prompt: str) -> Behaviour | None:
        agent = agent_of(prompt)
        return judge if agent is None else behaviours[agent - 1]
    return pick


async def test_gemini_agents_agree_at_once(gemini: FakeGemini) -> None:
    gemini.route = route(Behaviour(text="Kimchi is fermented cabbage [1]."),
                         Behaviour(text="Kimchi is fermented cabbage [2]."))
    result = await DebateEngine(gemini_provider(gemini)).run_debate(QUESTION, [KIMCHI, MAKING])
    assert result.stop_reason == "consensus" and result.rounds == 1 and result.llm_calls == len(gemini.requests) == 2
    assert result.usage.input_tokens == 240 and result.usage.output_tokens == 24 and result.usage.cost_usd > 0
    prompts = [r["body"]["contents"][0]["parts"][0]["text"] for r in gemini.requests]
    assert all(QUESTION in p for p in prompts)
    assert {"Korean dish" in p for p in prompts} == {True, False}  # each agent saw its own share


async def test_gemini_agents_disagree_until_the_judge(gemini: FakeGemini) -> None:
    gemini.route = route(Behaviour(text="Kimchi is a Korean dish of fermented cabbage [1]."),
                         Behaviour(text="Kimchi is a Japanese dish of fermented cabbage [2]."),
                         judge=Behaviour(text="CONFLICT\n- Kimchi is a Korean dish of fermented cabbage [1].\n"
                                              "- Kimchi is a Japanese dish of fermented cabbage [2]."))
    result = await DebateEngine(gemini_provider(gemini)).run_debate(QUESTION, [KIMCHI, PLANTED], max_rounds=2)
    assert result.stop_reason == "max_rounds" and result.judge == "llm" and result.conflict
    assert result.llm_calls == len(gemini.requests) == 5 and result.rounds == 2
    judge_prompt = gemini.requests[-1]["body"]["contents"][0]["parts"][0]["text"]
    assert "You judge a debate" in judge_prompt and "Japanese dish" in judge_prompt
    assert result.final_answer.splitlines() == [CONFLICT_HEADER["en"],
                                                "- Kimchi is a Korean dish of fermented cabbage. [1]",
                                                "- Kimchi is a Japanese dish of fermented cabbage. [2]"]


async def test_gemini_agent_that_times_out_is_dropped_not_waited_for(gemini: FakeGemini) -> None:
    gemini.route = route(Behaviour(text="Kimchi is fermented cabbage [1]."),
                         Behaviour(kind="slow", delay_s=3, text="Kimchi is fermented cabbage [2]."))
    start = time.perf_counter()
    result = await DebateEngine(gemini_provider(gemini), call_timeout_s=0.4).run_debate(QUESTION, [KIMCHI, MAKING])
    assert time.perf_counter() - start < 2.0
    assert [t.error for t in result.transcript[0]] == [None, "timeout"]
    assert result.stop_reason == "max_rounds" and result.judge == "vote"  # one voice left: no judge call
    assert result.final_answer == "Kimchi is fermented cabbage. [1]"


async def test_gemini_agents_returning_garbage_or_nothing(gemini: FakeGemini) -> None:
    gemini.route = route(Behaviour(text="Kimchi is fermented cabbage [1]."),
                         Behaviour(text="lorem ipsum dolor sit amet"), Behaviour(kind="empty"))
    result = await DebateEngine(gemini_provider(gemini), agents=3).run_debate(QUESTION, [KIMCHI, MAKING, RICE])
    good, garbage, empty = result.transcript[0]
    assert good.answering and not garbage.verified and garbage.struck and "no text" in (empty.error or "")
    assert result.final_answer == "Kimchi is fermented cabbage. [1]"
    assert any("no text" in e for e in result.errors)
