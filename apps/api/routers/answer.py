"""POST /answer (and /api/v1/answer): grounded answers with citations, as JSON or Server-Sent Events."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.sse import EventSourceResponse, format_sse_event

from apps.api import conversations
from apps.api.deps import ReadKey, RuntimeDep, VisibilityDep, narrowed
from apps.api.schemas import AnswerIn, to_filters
from apps.llm.factory import ProviderUnavailableError
from apps.orchestration.src.answer_models import AnswerRequest, AnswerResponse

router = APIRouter(tags=["answer"])


def _record(request: Request, result: AnswerResponse) -> None:
    """What the request context middleware logs with this request (strategy, quality, LLM usage)."""
    request.state.strategy = result.strategy
    request.state.quality = result.confidence
    request.state.llm = result.llm_usage()


def _event(name: str, data: Any) -> bytes:
    return format_sse_event(event=name, data_str=json.dumps(data, ensure_ascii=False))


@router.post("/answer", response_model=AnswerResponse, summary="Answer a question from the documents, with citations",
             responses={200: {"content": {"text/event-stream": {}},
                              "description": "JSON, or with stream=true Server-Sent Events: `rewritten` (a "
                                             "follow-up's standalone question), `token` events, `round` events "
                                             "of a debate, then `final`"}})
async def answer(body: AnswerIn, request: Request, runtime: RuntimeDep, key: ReadKey, visibility: VisibilityDep) -> Any:
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
    # Retrieval, citations and a debate's evidence see only this: the filters travel with the request.
    filters = to_filters(body.filters, await narrowed(runtime, visibility, body.collections))
    runtime.search.check_filters(filters)  # 422 now: inside the graph a failing retrieve only degrades
    past = await conversations.history(runtime, key, body.conversation_id)  # 404 for another key's
    assignment = request.state.assignment
    call = AnswerRequest(question=body.q, mode=body.mode, top_k=body.final_topk, filters=filters,
                         strategy=body.strategy, request_id=request.state.request_id, flags=assignment.flags,
                         variant=assignment.variant, history=past)
    if not body.stream:
        result = await pipeline.execute(call)
        _record(request, result)
        return await conversations.store_answer(runtime, key, body.conversation_id, past, result)

    # One route answers JSON or a stream, so it returns FastAPI's SSE response itself (a `yield` route is
    # always a stream) with events in FastAPI's SSE framing.
    async def events() -> AsyncIterator[bytes]:
        async for event in pipeline.execute_stream(call):
            if "token" in event:
                yield _event("token", {"text": event["token"]})
            elif "reset" in event:
                yield _event("reset", {})
            elif "round" in event:
                yield _event("round", event["round"])
            elif "rewritten" in event:
                yield _event("rewritten", event["rewritten"])
            elif "plan" in event:
                yield _event("plan", event["plan"])
            elif "final" in event:
                _record(request, event["final"])  # before the last byte: the request log sees it
                final = await conversations.store_answer(runtime, key, body.conversation_id, past, event["final"],
                                                         streaming=True)
                yield _event("final", final.model_dump(mode="json"))

    return EventSourceResponse(events(), headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
