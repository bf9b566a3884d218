"""POST /answer (and /api/v1/answer): grounded answers with citations, as JSON or Server-Sent Events."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any, Literal

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from apps.api.deps import ReadKey, ServicesDep
from apps.api.routers.search import to_filters
from apps.api.schemas import NonBlank, SearchFiltersIn
from apps.llm.factory import ProviderUnavailableError
from apps.orchestration.src.langgraph_pipeline import AnswerRequest

router = APIRouter(tags=["answer"])


class AnswerIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    q: NonBlank = Field(..., min_length=1, max_length=4000, description="the question, English or Korean")
    mode: Literal["answer", "summary", "keypoints"] = "answer"
    final_topk: int = Field(5, ge=1, le=20, description="chunks to compose from")
    filters: SearchFiltersIn | None = None
    strategy: str | None = None
    provider: Literal["extractive", "gemini", "local"] | None = Field(None, description="default from settings")
    stream: bool = False


class SourceOut(BaseModel):
    chunk_id: int
    doc_id: str
    title: str
    source_url: str | None
    snippet: str


class CitationOut(BaseModel):
    sentence: str
    chunk_ids: list[int]
    support: float


class AnswerOut(BaseModel):
    question: str
    answer: str
    sources: list[SourceOut]
    citations: list[CitationOut]
    confidence: float
    validation: dict[str, Any]
    model: str
    provider: str
    language: str
    question_type: str
    strategy: str | None
    usage: dict[str, Any]
    timings_ms: dict[str, float]
    degraded: bool
    degraded_nodes: list[dict[str, str]]
    request_id: str


def _llm_usage(result: dict[str, Any]) -> dict[str, Any]:
    if result["provider"] == "none":
        return {}
    usage = result["usage"]
    return {"llm_provider": result["provider"], "llm_model": result["model"],
            "llm_input_tokens": usage["input_tokens"], "llm_output_tokens": usage["output_tokens"],
            "llm_cost_usd": usage["cost_usd"], "llm_ms": result["timings_ms"].get("compose")}


def _sse(event: str, data: Any) -> str:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


@router.post("/answer", response_model=AnswerOut, summary="Answer a question from the documents, with citations",
             responses={200: {"content": {"text/event-stream": {}},
                              "description": "JSON, or with stream=true Server-Sent Events: `token` events, then `final`"}})
async def answer(body: AnswerIn, request: Request, services: ServicesDep, _: ReadKey) -> Any:
    pipelines = services.pipelines
    try:
        pipeline = pipelines.get(body.provider)
    except ProviderUnavailableError as exc:
        raise HTTPException(422, str(exc)) from None
    if body.strategy is not None:
        try:
            services.runtime.search.resolve(body.strategy)
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from None
    filters = to_filters(body.filters)
    assignment = request.state.assignment
    call = AnswerRequest(question=body.q, mode=body.mode, top_k=body.final_topk, filters=filters,
                         strategy=body.strategy, request_id=request.state.request_id, flags=assignment.flags,
                         variant=assignment.variant)
    if not body.stream:
        result = await pipeline.execute(call)
        request.state.strategy = result["strategy"]
        request.state.quality = result["confidence"]
        request.state.llm = _llm_usage(result)
        return result

    async def events() -> AsyncIterator[str]:
        async for event in pipeline.execute_stream(call):
            if "token" in event:
                yield _sse("token", {"text": event["token"]})
            elif "reset" in event:
                yield _sse("reset", {})
            elif "final" in event:
                yield _sse("final", event["final"])

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
