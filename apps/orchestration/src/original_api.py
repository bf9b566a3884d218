"""The original project's Python API shapes over DT-RAG's graph and planner: the answer pipeline's
request, response and class (`PipelineRequest`, `PipelineResponse`, `LangGraphPipeline`) and the
meta-planner's dictionaries (`analyze_complexity`, `plan_summary`). The runbooks reach them through the door
modules `langgraph_pipeline` and `meta_planner`, which add only the process's runtime.

Where the original differed, ours wins: execution is async and every result comes from the database;
complexity comes from the parts the question asks (one part: simple/direct; two: medium; three or more:
complex; multi_step whenever it splits), not from its length or words like "analyze"; the steps listed are
DT-RAG's real graph steps and `tools` is empty (the original named tools it never had).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any, overload

from apps.orchestration.src.answer_graph import AnswerPipeline
from apps.orchestration.src.answer_models import AnswerRequest, AnswerResponse
from apps.orchestration.src.bandit.replay import ReplayBuffer
from apps.orchestration.src.planner.plan import Plan
from apps.orchestration.src.planner.planner import QueryPlanner
from apps.search.types import SearchFilters
from apps.text.compound import split_question

log = logging.getLogger(__name__)


@dataclass
class PipelineRequest:
    """The original request: `options` may hold top_k, mode, strategy, taxonomy_path, language."""

    query: str
    options: dict[str, Any] = field(default_factory=dict)

    def to_answer_request(self) -> AnswerRequest:
        o = self.options
        filters = SearchFilters(taxonomy_path=o.get("taxonomy_path"), language=o.get("language"))
        return AnswerRequest(question=self.query, mode=o.get("mode", "answer"), top_k=int(o.get("top_k", 5)),
                             filters=filters, strategy=o.get("strategy"))


@dataclass
class PipelineResponse:
    answer: str
    sources: list[dict[str, Any]]
    latency: float  # seconds, as the original reported it
    step_timings: dict[str, float]  # seconds per node
    cost: float  # USD
    intent: str  # the question type
    confidence: float = 0.0
    response: AnswerResponse | None = None  # everything else ours returns

    @classmethod
    def from_answer(cls, response: AnswerResponse) -> PipelineResponse:
        timings = {k: v / 1000 for k, v in response.timings_ms.items() if k != "total"}
        return cls(answer=response.answer, sources=[s.model_dump() for s in response.sources],
                   latency=response.timings_ms.get("total", 0.0) / 1000, step_timings=timings,
                   cost=response.usage.cost_usd, intent=response.question_type, confidence=response.confidence,
                   response=response)


class LangGraphPipeline:
    """The original class name over our graph; `execute` takes either request type."""

    def __init__(self, pipeline: AnswerPipeline) -> None:
        self.pipeline = pipeline

    @overload
    async def execute(self, request: PipelineRequest) -> PipelineResponse: ...

    @overload
    async def execute(self, request: AnswerRequest) -> AnswerResponse: ...

    async def execute(self, request: PipelineRequest | AnswerRequest) -> PipelineResponse | AnswerResponse:
        if isinstance(request, PipelineRequest):
            return PipelineResponse.from_answer(await self.pipeline.execute(request.to_answer_request()))
        return await self.pipeline.execute(request)

    def execute_stream(self, request: AnswerRequest):
        return self.pipeline.execute_stream(request)

    @property
    def graph(self):
        return self.pipeline.graph

    @property
    def replay_buffer(self) -> ReplayBuffer:
        return self.pipeline.replay_buffer


STEPS = ["intent", "plan", "retrieve", "compose", "cite", "validate", "respond"]


def _complexity(parts: int) -> str:
    return "simple" if parts <= 1 else "medium" if parts == 2 else "complex"


async def analyze_complexity(query: str) -> dict[str, Any]:
    """The rule planner's view of a query: {complexity, strategy, parts, kind}. No model, no I/O."""
    split = split_question(query)
    return {"complexity": _complexity(len(split.parts)), "strategy": "multi_step" if split.compound else "direct",
            "parts": [p.text for p in split.parts], "kind": split.kind}


def _plan_dict(plan: Plan) -> dict[str, Any]:
    parts = [p.text for p in plan.parts]
    reasoning = (f"{len(parts)} parts ({plan.kind}), each retrieved with its own strategy and answered from its "
                 "own evidence" if plan.compound else "one question: retrieved and answered as asked")
    if plan.fell_back:
        reasoning += f"; the model's plan was refused ({plan.fell_back})"
    return {"strategy": "multi_step" if plan.compound else "direct", "complexity": _complexity(len(parts)),
            "reasoning": reasoning, "steps": STEPS, "tools": [], "parts": parts, "planner": plan.planner,
            "kind": plan.kind, "elapsed_ms": plan.elapsed_ms}


async def plan_summary(planner: QueryPlanner, query: str, timeout: float) -> dict[str, Any]:
    """The plan the answer graph's plan node would make, as the original's dictionary; past `timeout`
    seconds the rule planner's plan."""
    try:
        plan = await asyncio.wait_for(planner.plan(query), timeout=timeout)
    except TimeoutError:
        log.warning("planning timed out; the rule plan stands", extra={"timeout_s": timeout})
        plan = planner.rule_plan(query, fell_back=f"the model did not answer within {timeout} s")
    return _plan_dict(plan)
