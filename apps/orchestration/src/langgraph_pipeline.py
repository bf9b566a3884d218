"""The runbooks' door to the answer pipeline, and the original project's Python API over it.

    pipeline = get_pipeline()                      # the process's pipeline on the configured database
    len(pipeline.replay_buffer)                    # the shared replay buffer's size
    response = await pipeline.execute(PipelineRequest(query="What is RAG?", options={"top_k": 5}))
    response.answer, response.sources, response.latency, response.step_timings, response.cost, response.intent

The graph itself (state, nodes, edges) is `answer_graph.AnswerPipeline`; this module only adapts.
Where the original differed, ours wins: execution is async and every result comes from the database.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, overload

from apps.orchestration.src.answer_graph import AnswerPipeline
from apps.orchestration.src.answer_models import AnswerRequest, AnswerResponse
from apps.orchestration.src.bandit.replay import ReplayBuffer
from apps.runtime import get_runtime
from apps.search.types import SearchFilters

__all__ = ["AnswerPipeline", "AnswerRequest", "AnswerResponse", "LangGraphPipeline", "PipelineRequest",
           "PipelineResponse", "get_pipeline"]


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


def get_pipeline(provider: str | None = None) -> LangGraphPipeline:
    """The process-wide pipeline on the configured database and provider (built on first use)."""
    return LangGraphPipeline(get_runtime().pipelines.get(provider))
