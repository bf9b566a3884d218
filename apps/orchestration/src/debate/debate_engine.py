"""The debate: N agents, each on its own share of the evidence, answer concurrently; from round 2 each
sees the others' verified claims and revises; it stops at consensus, at `max_rounds`, at the total
timeout (calls in flight are cancelled) or when the token budget would be overrun. Disagreement left
after the last round goes to the judge: the model when there is one, else a vote weighted by
verified citations, which reports a conflict, each side with its citation, rather than pick a side.

`DebateEngine()` needs no model: its agents are extractive composers (no tokens, no network).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from apps.llm.base import ComposeRequest, Evidence
from apps.llm.extractive import ExtractiveProvider
from apps.orchestration.src.debate.agents import DebateAgent
from apps.orchestration.src.debate.agreement import assess
from apps.orchestration.src.debate.claims import verify
from apps.orchestration.src.debate.context import DebateContext
from apps.orchestration.src.debate.judge import JudgeError, llm_judge
from apps.orchestration.src.debate.ledger import Ledger
from apps.orchestration.src.debate.trigger import Trigger, should_debate
from apps.orchestration.src.debate.types import CompletionProvider, DebateResult, Judge, Role, StopReason, Turn
from apps.orchestration.src.debate.evidence_shares import ContextItem, as_evidence, evidence_shares
from apps.orchestration.src.debate.vote import Verdict, render_verdict, weighted_vote
from apps.orchestration.src.grounding import cite
from apps.text.analyzer import Analyzer, get_analyzer

RoundCallback = Callable[[int, list[Turn]], None]


def role_of(agent: int) -> Role:
    return "affirmative" if agent % 2 == 0 else "critical"


@dataclass
class _Run:
    ctx: DebateContext
    agents: list[DebateAgent]
    views: list[tuple[Evidence, ...]]
    ledger: Ledger
    call_timeout: float
    transcript: list[list[Turn]] = field(default_factory=list)
    stop: StopReason = "max_rounds"
    verdict: Verdict | None = None  # the model judge's, when it was asked and answered
    judge: Judge | None = None
    agreement: float = 0.0
    errors: list[str] = field(default_factory=list)

    def latest(self) -> dict[int, Turn]:
        """Each agent's last turn that did not fail: a failed call leaves its earlier position standing."""
        out: dict[int, Turn] = {}
        for turns in self.transcript:
            out.update({t.agent: t for t in turns if t.error is None})
        return out


class DebateEngine:
    def __init__(self, provider: CompletionProvider | None = None, *, agents: int = 2, max_rounds: int = 2,
                 timeout_s: float = 10.0, max_tokens: int = 16000, trigger: Trigger = "always",
                 call_timeout_s: float | None = None, agent_max_tokens: int = 500, max_sentences: int = 3,
                 support_threshold: float = 0.5, agreement_threshold: float = 0.5,
                 analyzer: Analyzer | None = None) -> None:
        self.provider = provider
        self.agents = max(1, agents)
        self.max_rounds = max(1, max_rounds)
        self.timeout_s = timeout_s
        self.max_tokens = max_tokens
        self.trigger: Trigger = trigger
        self.call_timeout_s = call_timeout_s
        self.agent_max_tokens = agent_max_tokens
        self.max_sentences = max_sentences
        self.support_threshold = support_threshold
        self.agreement_threshold = agreement_threshold
        # Standalone use gets the model-free analyser; the runtime passes the configured one.
        self._analyzer = analyzer or get_analyzer("bigram")

    def should_debate(self, confidence: float, unsupported: int = 0, legs_agree: bool = True) -> bool:
        return should_debate(self.trigger, confidence, unsupported, legs_agree)

    async def run_debate(self, query: str, context: Sequence[ContextItem], max_rounds: int | None = None,
                         timeout: float | None = None, on_round: RoundCallback | None = None) -> DebateResult:
        """`on_round(round, turns)` is called as each round completes (the answer stream's `round` events)."""
        rounds = max(1, self.max_rounds if max_rounds is None else max_rounds)
        return await self._run(query, context, self.agents, rounds, timeout, judged=True, on_round=on_round)

    async def run_vote(self, query: str, context: Sequence[ContextItem], voters: int | None = None,
                       timeout: float | None = None) -> DebateResult:
        """Self-consistency without the debate: one round of independent agents on their own shares, the
        answer their weighted majority, no judge and no conflict report. The baseline a debate must beat
        at equal calls."""
        return await self._run(query, context, voters or self.agents, 1, timeout, judged=False)

    async def _run(self, query: str, context: Sequence[ContextItem], agents: int, rounds: int,
                   timeout: float | None, judged: bool, on_round: RoundCallback | None = None) -> DebateResult:
        start = time.perf_counter()
        total = self.timeout_s if timeout is None else timeout
        ctx = DebateContext.build(self._analyzer, query, as_evidence(context), self.support_threshold)
        views = evidence_shares(ctx.evidence, agents)
        # Without a per-call bound one stalled call would eat the whole debate; each round and the judge
        # get an equal share of the total by default.
        call_timeout = self.call_timeout_s or total / (rounds + 1)
        run = _Run(ctx, [DebateAgent(role_of(i), self.agent_max_tokens, provider=self.provider,
                                     analyzer=self._analyzer, index=i, agents=len(views),
                                     max_sentences=self.max_sentences, support_threshold=self.support_threshold)
                         for i in range(len(views))], views, Ledger(self.max_tokens), call_timeout)
        if not ctx.evidence:
            run.stop, run.agreement = "consensus", 1.0  # nothing to debate: the documents do not say
        else:
            try:
                async with asyncio.timeout(max(total, 0.0)):
                    await self._rounds(run, rounds, judged, on_round)
            except TimeoutError:
                run.stop = "timeout"
                run.errors.append(f"timeout after {total:g} s")
        return self._result(run, start, report_conflicts=judged)

    async def _rounds(self, run: _Run, rounds: int, judged: bool, on_round: RoundCallback | None) -> None:
        for round_ in range(1, rounds + 1):
            latest = run.latest()
            turns = list(await asyncio.gather(*(
                agent.take_turn(run.ctx, view, round_, latest.get(agent.index),
                                [t for i, t in latest.items() if i != agent.index], run.ledger, run.call_timeout)
                for agent, view in zip(run.agents, run.views, strict=True))))
            run.transcript.append(turns)
            if on_round is not None:
                on_round(round_, turns)
            run.errors.extend(f"round {round_}, agent {t.agent + 1}: {t.error}" for t in turns if t.error)
            assessment = assess(run.ctx, turns, self.agreement_threshold)
            run.agreement = assessment.agreement
            if any(t.error == "budget" for t in turns):
                run.stop = "budget"
                return
            if all(t.error for t in turns):
                run.stop = "error"
                return
            if assessment.consensus:
                run.stop = "consensus"
                return
        run.stop = "max_rounds"
        positions = [t for t in run.latest().values() if t.answering]
        if judged and self.provider is not None and len(positions) >= 2:
            try:
                run.verdict = await llm_judge(run.ctx, self.provider, positions, self.max_sentences,
                                              self.agent_max_tokens, run.ledger, run.call_timeout)
                run.judge = "llm"
            except JudgeError as exc:
                run.errors.append(f"judge: {exc}")
                if str(exc) == "budget":
                    run.stop = "budget"

    def _single_pass(self, ctx: DebateContext) -> Verdict:
        request = ComposeRequest(ctx.question, ctx.language, "answer", ctx.evidence, self.max_sentences)
        chosen = ExtractiveProvider(self._analyzer).select(request)
        return Verdict([verify(ctx, c.sentence, (ctx.evidence[c.source].chunk_id,)) for c in chosen])

    def _result(self, run: _Run, start: float, report_conflicts: bool) -> DebateResult:
        ctx = run.ctx
        fell_back = run.stop in ("timeout", "budget", "error")
        latest = list(run.latest().values())
        verdict = run.verdict or weighted_vote(ctx, latest, self.agreement_threshold, report_conflicts)
        judge = run.judge or ("vote" if run.stop != "consensus" and any(t.answering for t in latest) else None)
        if fell_back and not verdict.claims and ctx.evidence:
            verdict = self._single_pass(ctx)  # no agent position to fall back on: the single pass it replaces
        answer, body = render_verdict(ctx, verdict)
        turns = [t for r in run.transcript for t in r]
        return DebateResult(
            final_answer=answer, rounds=len(run.transcript), llm_calls=run.ledger.llm_calls,
            affirmative_answers=[t.answer for t in turns if t.role == "affirmative"],
            critical_answers=[t.answer for t in turns if t.role == "critical"],
            elapsed_time=time.perf_counter() - start, transcript=run.transcript, stop_reason=run.stop,
            usage=run.ledger.usage, citations=cite(ctx.analyzer, body, ctx.evidence) if body else [],
            fell_back=fell_back, agreement=run.agreement, conflict=verdict.conflict,
            judge=judge, calls=run.ledger.calls,
            language=ctx.language, errors=run.errors,
        )
