"""The answer pipeline: a LangGraph `StateGraph`, state, nodes and edges in this one file.

    intent → retrieve ─┬─(no evidence)──────────────────────────────→ respond
                       └→ compose → cite ─┬─(evidence_tracking | hallucination_detection)→ track_evidence ─┐
                                          └───────────────────────────────────────────────────────────────┴→ validate
    validate ─┬─(debate asked, not yet run, DEBATE_TRIGGER agrees)→ debate ─┬─(settled)→ cite (its answer is
              │                                                            │             cited and validated)
              │                                                            └─(fell back)→ judge | respond
              ├─(llm_validation)→ judge → respond
              └──────────────────────────→ respond

Every node runs under its own timeout, cut to what is left of the request's deadline; a node that
fails or runs out of time degrades the answer (compose falls back to the extractive composer, the
others are skipped) and the response names the node and the reason. Grounding arithmetic lives in
`grounding`; this file only wires it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypedDict

from langgraph.config import get_stream_writer
from langgraph.graph import END, START, StateGraph

from apps.core import metrics
from apps.core.config import Settings
from apps.llm.base import AnswerProvider, ComposeRequest, Evidence, Usage
from apps.llm.extractive import NOT_FOUND, ExtractiveProvider
from apps.orchestration.src import grounding
from apps.orchestration.src.answer_models import AnswerRequest, AnswerResponse
from apps.orchestration.src.bandit.decision_log import Decision
from apps.orchestration.src.bandit.replay_buffer import ReplayBuffer
from apps.orchestration.src.bandit.service import StrategyBandit
from apps.orchestration.src.debate import CompletionProvider, DebateEngine, DebateResult, Turn
from apps.orchestration.src.debate.agent_prompts import CONFLICT_HEADER
from apps.rollout.flags import FlagContext, FlagService
from apps.text.analyzer import Analyzer
from apps.text.language import detect_language
from apps.text.questions import question_type

log = logging.getLogger(__name__)


class PipelineState(TypedDict, total=False):
    request: AnswerRequest
    flags: dict[str, bool]
    deadline: float
    language: str
    question_type: str
    strategy: str
    decision: Decision | None
    evidence: list[Evidence]
    answer: str
    model: str
    provider: str
    usage: Usage
    citations: list[grounding.Citation]
    unsupported: list[str]
    grounded: bool | None
    llm_judgement: str
    confidence: float
    degraded: list[dict[str, str]]
    timings_ms: dict[str, float]
    legs_agree: bool  # whether the BM25 and dense legs put the same chunk on top (DEBATE_TRIGGER=uncertain)
    debate: DebateResult | None  # set once the debate node ran, settled or not
    preamble: str  # a line before the cited answer (a debate's "the sources conflict")


Node = Callable[[PipelineState], Awaitable[dict[str, Any]]]


class AnswerPipeline:
    def __init__(self, bandit: StrategyBandit, provider: AnswerProvider, analyzer: Analyzer, settings: Settings,
                 flags: FlagService) -> None:
        self.bandit = bandit
        self.provider = provider
        self.extractive = ExtractiveProvider(analyzer)
        self.analyzer = analyzer
        self.settings = settings
        self.flags = flags
        # Agents prompt the provider when it can continue a prompt (Gemini, local); else they are extractive.
        self.debater = DebateEngine(
            provider if isinstance(provider, CompletionProvider) else None,
            agents=settings.debate_agents, max_rounds=settings.debate_max_rounds,
            timeout_s=settings.debate_timeout_ms / 1000, max_tokens=settings.debate_max_tokens,
            trigger=settings.debate_trigger, max_sentences=settings.answer_max_sentences,
            support_threshold=settings.support_threshold, analyzer=analyzer)
        self.graph = self._build()

    # --- edges ------------------------------------------------------------------------------------

    def _build(self):
        graph = StateGraph(PipelineState)
        graph.add_node("intent", self._guarded("intent", self.intent))
        graph.add_node("retrieve", self._guarded("retrieve", self.retrieve))
        graph.add_node("compose", self._guarded("compose", self.compose, fallback=self.compose_extractive))
        graph.add_node("cite", self._guarded("cite", self.cite))
        graph.add_node("track_evidence", self._guarded("track_evidence", self.track_evidence))
        graph.add_node("validate", self._guarded("validate", self.validate))
        graph.add_node("judge", self._guarded("judge", self.judge))
        graph.add_node("debate", self._guarded("debate", self.debate, timeout_ms=self.settings.debate_timeout_ms))
        graph.add_node("respond", self.respond)
        graph.add_edge(START, "intent")
        graph.add_edge("intent", "retrieve")
        graph.add_conditional_edges("retrieve", _after_retrieve, ["compose", "respond"])
        graph.add_edge("compose", "cite")
        graph.add_conditional_edges("cite", _after_cite, ["track_evidence", "validate"])
        graph.add_edge("track_evidence", "validate")
        graph.add_conditional_edges("validate", self._after_validate, ["debate", "judge", "respond"])
        graph.add_conditional_edges("debate", _after_debate, ["cite", "judge", "respond"])
        graph.add_edge("judge", "respond")
        graph.add_edge("respond", END)
        return graph.compile()

    def _guarded(self, name: str, node: Node, fallback: Node | None = None, timeout_ms: int | None = None) -> Node:
        """Timeout, timing and degradation around a node: the graph always reaches `respond`."""
        limit_s = (timeout_ms or self.settings.node_timeout_ms) / 1000

        async def run(state: PipelineState) -> dict[str, Any]:
            start = time.perf_counter()
            remaining = state["deadline"] - time.monotonic()
            budget = min(limit_s, max(remaining, 0.0))
            update: dict[str, Any] = {}
            try:
                if budget <= 0:
                    raise TimeoutError
                update = await asyncio.wait_for(node(state), timeout=budget)
            except Exception as exc:  # a failing node degrades the answer, never the request
                reason = "timed out" if isinstance(exc, TimeoutError) else f"{type(exc).__name__}: {exc}"
                log.warning("pipeline node degraded", extra={"node": name, "reason": reason,
                                                             "request_id": state["request"].request_id})
                update = {"degraded": [*state.get("degraded", []), {"node": name, "reason": reason}]}
                if fallback is not None:
                    update.update(await fallback({**state, **update}))
            elapsed = time.perf_counter() - start
            metrics.PIPELINE_STEP.labels(step=name).observe(elapsed)
            if self.settings.debug_pipeline:
                log.info("pipeline step", extra={"node": name, "ms": round(elapsed * 1000, 2),
                                                 "request_id": state["request"].request_id,
                                                 "wrote": sorted(update), "strategy": update.get("strategy"),
                                                 "evidence": len(update.get("evidence", []))})
            timings = dict(state.get("timings_ms", {}))
            # A node that runs again (cite and validate after a debate) adds to its time.
            timings[name] = round(timings.get(name, 0.0) + elapsed * 1000, 2)
            update["timings_ms"] = timings
            return update

        return run

    # --- nodes ------------------------------------------------------------------------------------

    async def intent(self, state: PipelineState) -> dict[str, Any]:
        question = state["request"].question
        return {"language": detect_language(question), "question_type": question_type(question)}

    async def retrieve(self, state: PipelineState) -> dict[str, Any]:
        request, flags = state["request"], state["flags"]
        retrieval = await self.bandit.retrieve(
            request.question, request.top_k, request.filters, request_id=request.request_id, endpoint="answer",
            strategy=request.strategy, use_bandit=flags.get("soft_q_bandit", False),
            replay=flags.get("experience_replay", False), variant=request.variant,
        )
        result = retrieval.result
        # Evidence must share a term with the question or be close in meaning; otherwise the honest
        # answer is "not in the documents", not the least bad chunk.
        floor = self.settings.min_dense_similarity
        evidence = [Evidence(h.chunk_id, h.doc_id, h.title, h.text, h.score, h.source_url) for h in result.hits
                    if h.ranks.get("bm25") is not None or (h.scores.get("dense") or 0.0) >= floor]
        top = result.hits[0].ranks if result.hits else {}
        legs_agree = not ({"bm25", "dense"} <= set(top)) or all((top.get(leg) or 99) <= 3 for leg in ("bm25", "dense"))
        update: dict[str, Any] = {"evidence": evidence, "strategy": result.strategy, "decision": retrieval.decision,
                                  "legs_agree": legs_agree}
        if result.degraded:
            update["degraded"] = [*state.get("degraded", []),
                                  *({"node": "retrieve", "reason": r} for r in result.degraded_reasons)]
        return update

    async def _compose_with(self, provider: AnswerProvider, state: PipelineState) -> dict[str, Any]:
        request = state["request"]
        mode = "answer" if request.mode == "debate" else request.mode  # the single pass a debate starts from
        compose = ComposeRequest(request.question, state.get("language", "en"), mode,
                                 tuple(state["evidence"]), self.settings.answer_max_sentences)
        writer = get_stream_writer()
        usage = Usage()
        pieces: list[str] = []
        async for piece in provider.stream(compose, usage):
            pieces.append(piece)
            writer({"token": piece})
        text = "".join(pieces).strip()
        if not text:
            raise ValueError(f"{provider.name} composed an empty answer")
        return {"answer": text, "model": provider.model, "provider": provider.name, "usage": usage}

    async def compose(self, state: PipelineState) -> dict[str, Any]:
        return await self._compose_with(self.provider, state)

    async def compose_extractive(self, state: PipelineState) -> dict[str, Any]:
        get_stream_writer()({"reset": True})  # a stream consumer drops what the failed provider sent
        return await self._compose_with(self.extractive, state)

    # Grounding analyses every sentence and chunk (Korean morphology is CPU): off the event loop.
    async def cite(self, state: PipelineState) -> dict[str, Any]:
        return {"citations": await asyncio.to_thread(grounding.cite, self.analyzer, state["answer"], state["evidence"])}

    async def track_evidence(self, state: PipelineState) -> dict[str, Any]:
        """Map every sentence to all chunks that support it; mark (or remove) unsupported sentences."""
        citations, unsupported = await asyncio.to_thread(
            grounding.track, self.analyzer, state.get("citations", []), state["evidence"],
            self.settings.support_threshold)
        update: dict[str, Any] = {"citations": citations, "unsupported": unsupported}
        if state["flags"].get("hallucination_detection") and self.settings.remove_unsupported and unsupported:
            kept = [c for c in citations if c.sentence not in unsupported]
            update["citations"] = kept
            update["answer"] = " ".join(c.sentence for c in kept) or NOT_FOUND[state.get("language", "en")]
        return update

    async def validate(self, state: PipelineState) -> dict[str, Any]:
        citations = state.get("citations", [])
        threshold = self.settings.support_threshold
        unsupported = state.get("unsupported") or [c.sentence for c in citations if c.support < threshold]
        return {"unsupported": unsupported, "grounded": bool(citations) and not unsupported,
                "confidence": grounding.confidence(citations, state["evidence"])}

    async def judge(self, state: PipelineState) -> dict[str, Any]:
        if not self.provider.can_judge:
            return {"llm_judgement": "skipped: no LLM provider configured"}
        usage = Usage()
        verdict = await self.provider.judge(state["request"].question, state["answer"], tuple(state["evidence"]),
                                            usage)
        update: dict[str, Any] = {"llm_judgement": "grounded" if verdict else "not grounded",
                                  "usage": (state.get("usage") or Usage()) + usage}
        if verdict is False:
            update["grounded"] = False
        return update

    async def debate(self, state: PipelineState) -> dict[str, Any]:
        """The agents' answer replaces the single pass when the debate settles; when it runs out of time,
        budget or luck, the single pass stands and the response says why."""
        writer = get_stream_writer()

        def on_round(round_: int, turns: list[Turn]) -> None:
            metrics.DEBATE_ROUNDS.inc()
            writer({"round": {"round": round_, "agents": [t.to_dict() for t in turns]}})

        # The engine's own timeout, a little inside the node's, so it returns a result rather than being cut.
        remaining = state["deadline"] - time.monotonic()
        timeout = max(min(self.settings.debate_timeout_ms / 1000, remaining) - 0.05, 0.0)
        result = await self.debater.run_debate(state["request"].question, state["evidence"], timeout=timeout,
                                               on_round=on_round)
        metrics.DEBATES.labels(stop_reason=result.stop_reason).inc()
        metrics.DEBATE_LLM_CALLS.inc(result.llm_calls)
        update: dict[str, Any] = {"debate": result,
                                  "usage": (state.get("usage") or Usage()) + result.usage}
        if result.fell_back:
            metrics.DEBATE_FALLBACKS.labels(reason=result.stop_reason).inc()
            reason = "; ".join([result.stop_reason, *result.errors]) if result.errors else result.stop_reason
            update["degraded"] = [*state.get("degraded", []), {"node": "debate", "reason": reason}]
            return update
        header = CONFLICT_HEADER["ko" if state.get("language") == "ko" else "en"]
        answer = result.final_answer
        if answer.startswith(header):  # the header cites nothing: it stays out of citations and validation
            update["preamble"], answer = header, answer[len(header):].lstrip("\n")
        update.update({"answer": answer, "unsupported": []})
        return update

    def _after_validate(self, state: PipelineState) -> str:
        request, flags = state["request"], state["flags"]
        asked = request.mode == "debate" or (request.mode == "answer" and flags.get("debate_mode", False))
        if asked and "debate" not in state and state.get("evidence"):
            unsupported = len(state.get("unsupported") or [])
            if self.debater.should_debate(state.get("confidence", 0.0), unsupported, state.get("legs_agree", True)):
                return "debate"
        return "judge" if flags.get("llm_validation") else "respond"

    async def respond(self, state: PipelineState) -> dict[str, Any]:
        if not state.get("evidence"):
            return {"answer": NOT_FOUND[state.get("language", "en")], "citations": [], "grounded": False,
                    "confidence": 0.0, "model": "none", "provider": "none", "unsupported": []}
        return {}

    # --- entry points -----------------------------------------------------------------------------

    async def _initial(self, request: AnswerRequest) -> PipelineState:
        flags = request.flags
        if flags is None:  # a caller outside HTTP (CLI, scripts): what the flag service serves, kill switches included
            await self.flags.refresh()
            flags = self.flags.assign(FlagContext(request_id=request.request_id)).flags
        return {"request": request, "flags": flags, "degraded": [], "timings_ms": {},
                "deadline": time.monotonic() + self.settings.answer_deadline_ms / 1000}

    async def execute(self, request: AnswerRequest) -> AnswerResponse:
        start = time.perf_counter()
        state = await self.graph.ainvoke(await self._initial(request))
        return self._response(state, start)

    async def execute_stream(self, request: AnswerRequest) -> AsyncIterator[dict[str, Any]]:
        """Yields {"token": ...} events as the answer is composed, then {"final": AnswerResponse}."""
        start = time.perf_counter()
        state: PipelineState = {}
        async for mode, payload in self.graph.astream(await self._initial(request), stream_mode=["custom", "values"]):
            if mode == "custom":
                yield payload
            else:
                state = payload
        yield {"final": self._response(state, start)}

    @property
    def replay_buffer(self) -> ReplayBuffer:
        return self.bandit.replay

    def _response(self, state: PipelineState, start: float) -> AnswerResponse:
        request = state["request"]
        decision, debate = state.get("decision"), state.get("debate")
        if decision is not None and debate is not None:
            decision.debated, decision.debate_llm_calls = True, debate.llm_calls
            decision.debate_cost_usd = debate.usage.cost_usd
        # The answer's groundedness is the implicit reward of the strategy that found its evidence.
        self.bandit.commit(decision, quality=state.get("confidence", 0.0))
        evidence = state.get("evidence", [])
        usage = state.get("usage") or Usage()
        if state.get("provider", "none") != "none":
            labels = {"provider": state["provider"], "model": state.get("model", "")}
            metrics.LLM_TOKENS.labels(**labels, kind="input").inc(usage.input_tokens)
            metrics.LLM_TOKENS.labels(**labels, kind="output").inc(usage.output_tokens)
            metrics.LLM_COST.labels(**labels).inc(usage.cost_usd)
        judgement = (state.get("llm_judgement", "skipped: not reached") if state["flags"].get("llm_validation")
                     else None)
        preamble = state.get("preamble")
        answer = state.get("answer", "")
        return AnswerResponse.model_validate({
            "question": request.question,
            "answer": f"{preamble}\n{answer}" if preamble else answer,
            "sources": [{"chunk_id": e.chunk_id, "doc_id": e.doc_id, "title": e.title, "source_url": e.source_url,
                         "snippet": e.text[:300]} for e in evidence],
            "citations": [vars(c) for c in state.get("citations", [])],
            "confidence": state.get("confidence", 0.0),
            "validation": {"grounded": bool(state.get("grounded")),
                           "unsupported_sentences": state.get("unsupported", []), "llm_judgement": judgement},
            "model": state.get("model", "none"),
            "provider": state.get("provider", "none"),
            "language": state.get("language", detect_language(request.question)),
            "question_type": state.get("question_type", "other"),
            "strategy": state.get("strategy"),
            "usage": vars(usage),
            "timings_ms": {**state.get("timings_ms", {}), "total": round((time.perf_counter() - start) * 1000, 2)},
            "degraded": bool(state.get("degraded")),
            "degraded_nodes": state.get("degraded", []),
            "request_id": request.request_id,
            "debate": _debate_out(debate) if debate is not None else None,
        })


def _debate_out(result: DebateResult) -> dict[str, Any]:
    summary = result.to_dict()
    return {key: summary[key] for key in ("rounds", "llm_calls", "stop_reason", "agreement", "conflict", "judge",
                                          "fell_back", "usage", "elapsed_ms", "agents")}


def _after_retrieve(state: PipelineState) -> str:
    return "compose" if state.get("evidence") else "respond"


def _after_cite(state: PipelineState) -> str:
    flags = state["flags"]
    return "track_evidence" if flags.get("evidence_tracking") or flags.get("hallucination_detection") else "validate"


def _after_debate(state: PipelineState) -> str:
    result = state.get("debate")
    if result is not None and not result.fell_back:
        return "cite"
    return "judge" if state["flags"].get("llm_validation") else "respond"
