"""The runbooks' door to the answer pipeline, in the original project's Python API.

    pipeline = get_pipeline()                      # the process's pipeline on the configured database
    len(pipeline.replay_buffer)                    # the shared replay buffer's size
    response = await pipeline.execute(PipelineRequest(query="What is RAG?", options={"top_k": 5}))
    response.answer, response.sources, response.latency, response.step_timings, response.cost, response.intent

The graph itself is `answer_graph.AnswerPipeline`, the original's shapes over it `original_api`; this
module only adds the process's runtime.
"""

from __future__ import annotations

from apps.orchestration.src.answer_graph import AnswerPipeline
from apps.orchestration.src.answer_models import AnswerRequest, AnswerResponse
from apps.orchestration.src.original_api import LangGraphPipeline, PipelineRequest, PipelineResponse
from apps.runtime import get_runtime

__all__ = ["AnswerPipeline", "AnswerRequest", "AnswerResponse", "LangGraphPipeline", "PipelineRequest",
           "PipelineResponse", "get_pipeline"]


def get_pipeline(provider: str | None = None) -> LangGraphPipeline:
    """The process-wide pipeline on the configured database and provider (built on first use)."""
    return LangGraphPipeline(get_runtime().pipelines.get(provider))
