"""The answer pipeline: a LangGraph `StateGraph`, state, nodes and edges in this one file.

    intent → retrieve ─┬─(no evidence)──────────────────────────────→ respond
                       └→ compose → cite ─┬─(evidence_tracking | hallucination_detection)→ track_evidence ─┐
                                          └───────────────────────────────────────────────────────────────┴→ validate
    validate ─┬─(debate asked, not yet run, DEBATE_TRIGGER agrees)→ debate ─┬─(settled)→ cite (its answer is
              │                                                            │             cited and validated)
              │                                                            └─(fell back)→ judge | respond
              ├─(llm_validation)→ judge → respond
              └──────────────────────────→ respond
    With `mcp_tools` (and a tool step attached by an entry point, apps/doors) retrieve → tools → compose | respond:
    the tools node adds registered MCP tools' results to the evidence, decided from the question and plan only.
    With `meta_planner` intent → plan → retrieve: a multi-part question is retrieved part by part into one
    context and answered part by part (apps/orchestration/src/planner); a one-part plan changes nothing.
    In a conversation rewrite → intent: a follow-up becomes a standalone question before anything reads it
    (apps/orchestration/src/conversations); a late or refused model rewrite leaves the rules' rewrite.

Every node runs under its own timeout, cut to what is left of the request's deadline; a node that
fails or runs out of time degrades the answer (compose falls back to the extractive composer, the
others are skipped) and the response names the node and the reason. Grounding arithmetic lives in
`grounding`; this file only wires it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from typing import Any, Protocol, TypedDict

from langgraph.config import get_stream_writer
from langgraph.graph import END, START, StateGraph

from apps.core import metrics
from apps.core.config import Settings
from apps.core.redaction import redact_text
from apps.llm.base import AnswerProvider, ComposeRequest, Evidence, LLMError, Usage
from apps.llm.extractive import NOT_FOUND, ExtractiveProvider
from apps.orchestration.src import grounding
from apps.orchestration.src.answer_models import AnswerRequest, AnswerResponse
from apps.orchestration.src.bandit.decision_log import Decision
from apps.orchestration.src.bandit.replay import ReplayBuffer
from apps.orchestration.src.bandit.service import StrategyBandit
from apps.orchestration.src.conversations.rewrite import FollowupRewriter
from apps.orchestration.src.conversations.types import FollowupRewrite
from apps.orchestration.src.debate import CompletionProvider, DebateEngine, DebateResult, Turn
from apps.orchestration.src.debate.agent_prompts import CONFLICT_HEADER
from apps.orchestration.src.planner.compose import Section, cite_sections, compose_parts, part_evidence, part_qualities
from apps.orchestration.src.planner.plan import Plan
from apps.orchestration.src.planner.planner import QueryPlanner
from apps.orchestration.src.planner.retrieval import retrieve_parts, single, with_plan
from apps.rollout.flags import FlagContext, FlagService
from apps.search.service import SearchUnavailableError
from apps.search.types import Hit
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
    plan: Plan  # with meta_planner: the question's parts, filled with each part's strategy and hits by retrieve
    decisions: list[Decision | None]  # a multi-part plan's bandit decisions, one per part
    sections: list[Section]  # a multi-part plan's answer, one section per part
    cases: dict[str, Any] | None  # with neural_case_selector: what case memory did (SearchResult.cases)
    case_ids: dict[int, list[int]]  # chunk id → the past cases that moved it up


Node = Callable[[PipelineState], Awaitable[dict[str, Any]]]


class ToolStep(Protocol):
    """The `tools` node's work (apps/doors/tool_step.py): which registered tools the question needs, through
    the policy gate, their results as evidence (negative chunk ids, `tool:<server>/<name>` doc ids). It sees
    the question, the plan's parts and whether documents answered each, never a passage's text: retrieved
    text cannot make DT-RAG call a tool. Returns the evidence, its chunk ids by the part they answer, and
    the degradations to report."""

    async def __call__(self, request: AnswerRequest, flags: dict[str, bool], parts: list[str], answered: list[bool],
                       ) -> tuple[list[Evidence], dict[int, list[int]], list[dict[str, str]]]: ...


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
        self.tool_step: ToolStep | None = None  # set by an entry point that serves tools (AnswerPipelines.use_tools)
        self.planner = QueryPlanner.for_provider(provider, analyzer, settings)
        self.rewriter = FollowupRewriter.for_provider(provider, analyzer, settings, bandit.search)
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
        graph.add_node("plan", self._guarded("plan", self.plan_question, timeout_ms=self.settings.planner_timeout_ms))
        graph.add_node("rewrite", self._guarded("rewrite", self.rewrite_question, fallback=self.rewrite_by_rule,
                                                timeout_ms=self.settings.rewrite_timeout_ms))
        graph.add_conditional_edges(START, _at_start, ["rewrite", "intent"])
        graph.add_edge("rewrite", "intent")
        graph.add_conditional_edges("intent", _after_intent, ["plan", "retrieve"])
        graph.add_edge("plan", "retrieve")
        graph.add_node("tools", self._guarded("tools", self.tools))
        graph.add_conditional_edges("retrieve", self._after_retrieve, ["tools", "compose", "respond"])
        graph.add_conditional_edges("tools", _after_retrieve, ["compose", "respond"])
        graph.add_edge("compose", "cite")
        graph.add_conditional_edges("cite", _after_cite, ["track_evidence", "validate"])
        graph.add_edge("track_evidence", "validate")
        graph.add_conditional_edges("validate", self._after_validate, ["debate", "judge", "respond"])
        graph.add_conditional_edges("debate", _after_debate, ["cite", "judge", "respond"])
        graph.add_edge("judge", "respond")
        graph.add_edge("respond", END)
        return graph.compile()

    @staticmethod
    def _what_failed(exc: Exception) -> str:
        """A node's failure as a client may read it in `degraded_nodes`: a fixed category, never its text."""
        if isinstance(exc, TimeoutError):
            return "timed out"
        if isinstance(exc, LLMError):
            return "failed: the model did not answer usably"
        if isinstance(exc, SearchUnavailableError):
            return "failed: search is unavailable"
        return "failed"

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
                # The client reads what failed; how (the exception's text, which can quote a provider's
                # reply, SQL, hosts or URLs with credentials) goes to the log only, masked.
                reason = self._what_failed(exc)
                log.warning("pipeline node degraded", exc_info=reason == "failed",
                            extra={"node": name, "reason": reason, "request_id": state["request"].request_id,
                                   "error": redact_text(f"{type(exc).__name__}: {exc}")})
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

    async def rewrite_question(self, state: PipelineState) -> dict[str, Any]:
        request = state["request"]
        return _rewritten(request, await self.rewriter.rewrite(request.question, request.history, request.filters))

    async def rewrite_by_rule(self, state: PipelineState) -> dict[str, Any]:
        request = state["request"]
        return _rewritten(request, self.rewriter.rule(request.question, request.history))

    async def plan_question(self, state: PipelineState) -> dict[str, Any]:
        plan = await self.planner.plan(state["request"].question)
        get_stream_writer()({"plan": plan.to_dict()})  # a stream's first event: the parts to expect
        return {"plan": plan}

    def _evidence(self, hits: list[Hit], qualified: set[int] | None = None) -> list[Evidence]:
        # Evidence must share a term with the question or be close in meaning; otherwise the honest
        # answer is "not in the documents", not the least bad chunk. (`qualified`: the chunks that passed
        # this test in some part's own search, for a plan's merged context.)
        floor = self.settings.min_dense_similarity
        return [Evidence(h.chunk_id, h.doc_id, h.title, h.text, h.score, h.source_url) for h in hits
                if (h.chunk_id in qualified if qualified is not None
                    else h.ranks.get("bm25") is not None or (h.scores.get("dense") or 0.0) >= floor)]

    async def _retrieve_parts(self, state: PipelineState, plan: Plan) -> dict[str, Any]:
        request, flags = state["request"], state["flags"]
        planned = await retrieve_parts(
            self.bandit, plan, request.top_k, request.filters, request_id=request.request_id, endpoint="answer",
            strategy=request.strategy, use_bandit=flags.get("soft_q_bandit", False),
            replay=flags.get("experience_replay", False), variant=request.variant,
            cases=flags.get("neural_case_selector", False))
        # A chunk is a part's evidence by that part's own ranks (a chunk one part found by its words may
        # be another part's dense-only filler).
        kept = [{e.chunk_id for e in self._evidence(p.result.hits)} if p.result else set() for p in planned.parts]
        evidence = self._evidence(planned.hits, set().union(*kept))
        update: dict[str, Any] = {
            "evidence": evidence, "strategy": planned.result.strategy, "decision": planned.parts[0].decision,
            "decisions": [p.decision for p in planned.parts], "legs_agree": True,
            "plan": with_plan(plan, planned, kept), "cases": planned.result.cases,
            "case_ids": {h.chunk_id: h.case_ids for h in planned.hits}}
        if planned.result.degraded:
            update["degraded"] = [*state.get("degraded", []),
                                  *({"node": "retrieve", "reason": r} for r in planned.result.degraded_reasons)]
        return update

    async def retrieve(self, state: PipelineState) -> dict[str, Any]:
        request, flags = state["request"], state["flags"]
        plan = state.get("plan")
        if plan is not None and plan.compound:
            return await self._retrieve_parts(state, plan)
        retrieval = await self.bandit.retrieve(
            request.question, request.top_k, request.filters, request_id=request.request_id, endpoint="answer",
            strategy=request.strategy, use_bandit=flags.get("soft_q_bandit", False),
            replay=flags.get("experience_replay", False), variant=request.variant,
            cases=flags.get("neural_case_selector", False),
        )
        result = retrieval.result
        evidence = self._evidence(result.hits)
        top = result.hits[0].ranks if result.hits else {}
        legs_agree = not ({"bm25", "dense"} <= set(top)) or all((top.get(leg) or 99) <= 3 for leg in ("bm25", "dense"))
        update: dict[str, Any] = {"evidence": evidence, "strategy": result.strategy, "decision": retrieval.decision,
                                  "legs_agree": legs_agree, "cases": result.cases,
                                  "case_ids": {h.chunk_id: h.case_ids for h in result.hits}}
        if plan is not None:  # one part: the plain retrieval, reported in the plan
            update["plan"] = with_plan(plan, single(result, retrieval.decision), [{e.chunk_id for e in evidence}])
        if result.degraded:
            update["degraded"] = [*state.get("degraded", []),
                                  *({"node": "retrieve", "reason": r} for r in result.degraded_reasons)]
        return update

    def _after_retrieve(self, state: PipelineState) -> str:
        if state["flags"].get("mcp_tools") and self.tool_step is not None:
            return "tools"
        return _after_retrieve(state)

    async def tools(self, state: PipelineState) -> dict[str, Any]:
        """Tool results join the evidence and are cited like passages (see `ToolStep`)."""
        assert self.tool_step is not None  # routed here only with one
        evidence, plan = state.get("evidence", []), state.get("plan")
        parts, answered = _plan_parts(state)
        found, by_part, notes = await self.tool_step(state["request"], state["flags"], parts, answered)
        update: dict[str, Any] = {"evidence": [*evidence, *found]}
        if plan is not None and by_part:  # a compound answer composes each part from its own hits
            update["plan"] = replace(plan, parts=tuple(replace(p, hits=(*p.hits, *by_part.get(i, ())))
                                                       for i, p in enumerate(plan.parts)))
        if notes:
            update["degraded"] = [*state.get("degraded", []), *notes]
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

    async def _compose_parts(self, provider: AnswerProvider, state: PipelineState) -> dict[str, Any]:
        request, plan, evidence = state["request"], state["plan"], state["evidence"]
        mode = "answer" if request.mode == "debate" else request.mode
        return await compose_parts(provider, plan.parts, part_evidence(plan.parts, evidence), evidence,
                                   state.get("language", "en"), mode, self.settings.answer_max_sentences,
                                   get_stream_writer())

    async def compose(self, state: PipelineState) -> dict[str, Any]:
        if _compound(state):
            return await self._compose_parts(self.provider, state)
        return await self._compose_with(self.provider, state)

    async def compose_extractive(self, state: PipelineState) -> dict[str, Any]:
        get_stream_writer()({"reset": True})  # a stream consumer drops what the failed provider sent
        if _compound(state):
            return await self._compose_parts(self.extractive, state)
        return await self._compose_with(self.extractive, state)

    # Grounding analyses every sentence and chunk (Korean morphology is CPU): off the event loop.
    async def cite(self, state: PipelineState) -> dict[str, Any]:
        if state.get("sections") and state.get("debate") is None:  # a planned answer: section by section
            return await asyncio.to_thread(cite_sections, self.analyzer, state["sections"], state["evidence"])
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
            # The errors quote model servers and exceptions: the log keeps them, the client gets counts.
            reason = result.stop_reason
            if result.errors:
                log.warning("the debate fell back", extra={"stop_reason": reason, "errors": result.errors})
                kinds = Counter("timeout" if "timeout" in e else "failed" for e in result.errors)
                reason = f"{reason} (model calls: {', '.join(f'{n} {kind}' for kind, n in sorted(kinds.items()))})"
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
        # A multi-part plan is not debated: a debate settles one answer, the plan asks several questions.
        if asked and "debate" not in state and state.get("evidence") and not _compound(state):
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
        # The answer's groundedness is the implicit reward of the strategy that found its evidence (for a
        # multi-part plan, each part's own section against its own evidence).
        plan, decisions = state.get("plan"), state.get("decisions")
        if plan is not None and decisions is not None:
            qualities = part_qualities(plan.parts, state.get("sections", []), state.get("evidence", []))
            for part_decision, quality in zip(decisions, qualities, strict=True):
                self.bandit.commit(part_decision, quality=quality)
        else:
            self.bandit.commit(decision, quality=state.get("confidence", 0.0))
        evidence = state.get("evidence", [])
        usage = (state.get("usage") or Usage()) + (plan.usage if plan is not None else Usage())
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
            "question": request.asked or request.question,
            "rewritten_question": request.question if request.asked is not None else None,
            "answer": f"{preamble}\n{answer}" if preamble else answer,
            "sources": [{"chunk_id": e.chunk_id, "doc_id": e.doc_id, "title": e.title, "source_url": e.source_url,
                         "snippet": e.text[:300],
                         "case_ids": state["case_ids"].get(e.chunk_id, []) if state.get("cases") is not None else None}
                        for e in evidence],
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
            "plan": plan.to_dict() if plan is not None else None,
            "cases": state.get("cases"),
        })


def _debate_out(result: DebateResult) -> dict[str, Any]:
    summary = result.to_dict()
    return {key: summary[key] for key in ("rounds", "llm_calls", "stop_reason", "agreement", "conflict", "judge",
                                          "fell_back", "usage", "elapsed_ms", "agents")}


def _after_retrieve(state: PipelineState) -> str:
    return "compose" if state.get("evidence") else "respond"


def _after_intent(state: PipelineState) -> str:
    return "plan" if state["flags"].get("meta_planner") else "retrieve"


def _at_start(state: PipelineState) -> str:
    return "rewrite" if state["request"].history else "intent"


def _rewritten(request: AnswerRequest, rewrite: FollowupRewrite) -> dict[str, Any]:
    """The request as the rest of the graph reads it: its question made standalone (the asked one kept)."""
    if not rewrite.rewritten:
        return {}
    get_stream_writer()({"rewritten": {"question": rewrite.question, "by": rewrite.by}})
    return {"request": replace(request, question=rewrite.question, asked=request.question)}


def _compound(state: PipelineState) -> bool:
    plan = state.get("plan")
    return plan is not None and plan.compound


def _plan_parts(state: PipelineState) -> tuple[list[str], list[bool]]:
    """The plan's parts and whether documents answered each (it kept evidence), else the question and whether
    any evidence was found: what the tools node decides from (counts, never passage text)."""
    plan = state.get("plan")
    if plan is not None and plan.parts:
        return [p.text for p in plan.parts], [bool(p.hits) for p in plan.parts]
    return [state["request"].question], [bool(state.get("evidence"))]


def _after_cite(state: PipelineState) -> str:
    flags = state["flags"]
    return "track_evidence" if flags.get("evidence_tracking") or flags.get("hallucination_detection") else "validate"


def _after_debate(state: PipelineState) -> str:
    result = state.get("debate")
    if result is not None and not result.fell_back:
        return "cite"
    return "judge" if state["flags"].get("llm_validation") else "respond"
