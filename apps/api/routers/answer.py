"""POST /answer (and /api/v1/answer): grounded answers with citations, as JSON or Server-Sent Events."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any, Literal

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from apps.api.deps import ReadKey, RuntimeDep
from apps.api.routers.search import to_filters
from apps.api.schemas import NonBlank, SearchFiltersIn
from apps.llm.factory import ProviderUnavailableError
from apps.orchestration.src.answer_models import AnswerRequest, AnswerResponse

router = APIRouter(tags=["answer"])


class AnswerIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    q: NonBlank = Field(..., min_length=1, max_length=4000, description="the question, English or Korean")
    mode: Literal["answer", "summary", "keypoints", "debate"] = Field(
        "answer", description="debate: agents on different shares of the evidence settle the answer")
    final_topk: int = Field(5, ge=1, le=20, description="chunks to compose from")
    filters: SearchFiltersIn | None = None
    strategy: str | None = None
    provider: Literal["extractive", "gemini", "local"] | None = Field(None, description="default from settings")
    stream: bool = False


def _record(request: Request, result: AnswerResponse) -> None:
    """What the request context middleware logs with this request (strategy, quality, LLM usage)."""
    request.state.strategy = result.strategy
    request.state.quality = result.confidence
    request.state.llm = result.llm_usage()


def _sse(event: str, data: Any) -> str:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


@router.post("/answer", response_model=AnswerResponse, summary="Answer a question from the documents, with citations",
             responses={200: {"content": {"text/event-stream": {}},
                              "description": "JSON, or with stream=true Server-Sent Events: `token` events, "
                                             "`round` events of a debate, then `final`"}})
async def answer(body: AnswerIn, request: Request, runtime: RuntimeDep, _: ReadKey) -> Any:
    pipelines = runtime.pipelines
    try:
        pipeline = pipelines.get(body.provider)
    except ProviderUnavailableError as exc:
        raise HTTPException(422, str(exc)) from None
    if body.strategy is not None:
        try:
            runtime.search.resolve(body.strategy)
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from None
    filters = to_filters(body.filters)
    assignment = request.state.assignment
    call = AnswerRequest(question=body.q, mode=body.mode, top_k=body.final_topk, filters=filters,
                         strategy=body.strategy, request_id=request.state.request_id, flags=assignment.flags,
                         variant=assignment.variant)
    if not body.stream:
        result = await pipeline.execute(call)
        _record(request, result)
        return result

    async def events() -> AsyncIterator[str]:
        async for event in pipeline.execute_stream(call):
            if "token" in event:
                yield _sse("token", {"text": event["token"]})
            elif "reset" in event:
                yield _sse("reset", {})
            elif "round" in event:
                yield _sse("round", event["round"])
            elif "final" in event:
                _record(request, event["final"])  # before the last byte: the request log sees it
                yield _sse("final", event["final"].model_dump(mode="json"))

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
