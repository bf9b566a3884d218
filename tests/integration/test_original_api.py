"""The original project's pipeline API over the real graph: `LangGraphPipeline`, `PipelineRequest`,
`PipelineResponse` and `get_pipeline()`, in-process and from a plain script."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from apps.orchestration.src.answer_models import AnswerRequest, AnswerResponse
from apps.orchestration.src.langgraph_pipeline import LangGraphPipeline, PipelineRequest, PipelineResponse
from tests.support.corpus import corpus

ROOT = Path(__file__).resolve().parents[2]


async def test_original_request_and_response_over_the_real_graph(runtime) -> None:
    await runtime.ingestion.ingest(corpus())
    pipeline = LangGraphPipeline(runtime.pipelines.get())
    response = await pipeline.execute(PipelineRequest(query="What does vitamin D deficiency cause?",
                                                      options={"top_k": 3, "strategy": "bm25"}))
    assert isinstance(response, PipelineResponse)
    assert "bone loss" in response.answer and response.sources[0]["title"] == "Vitamin D"
    assert len(response.sources) <= 3 and response.response.strategy == "bm25"
    assert 0 < response.latency < 30 and {"intent", "retrieve", "compose", "cite", "validate"} <= set(
        response.step_timings)
    assert sum(response.step_timings.values()) <= response.latency
    assert response.cost == 0.0 and response.intent == "what"
    ours = await pipeline.execute(AnswerRequest("What does vitamin D deficiency cause?", flags={}))
    assert isinstance(ours, AnswerResponse) and ours.answer == response.answer
    assert pipeline.graph is runtime.pipelines.get().graph


def test_get_pipeline_from_a_plain_script(tmp_path) -> None:
    env = {**os.environ, "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'script.db'}"}
    script = """
import asyncio
from apps.core.config import get_settings
from apps.core.migrations import upgrade
from apps.ingestion.documents import SourceDocument
from apps.orchestration.src.langgraph_pipeline import PipelineRequest, get_pipeline
from apps.runtime import get_runtime

upgrade(get_settings().database_url)
pipeline = get_pipeline()

async def main():
    await get_runtime().ingestion.ingest([SourceDocument(text="Kimchi is fermented cabbage with chili.",
                                                         title="Kimchi", origin="script")])
    return await pipeline.execute(PipelineRequest(query="What is kimchi?"))

response = asyncio.run(main())
print(response.intent, response.sources[0]["title"], "fermented" in response.answer, len(pipeline.replay_buffer))
"""
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["what", "Kimchi", "True", "0"]
