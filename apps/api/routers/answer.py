"""POST /answer (and /api/v1/answer): grounded answers with citations, as JSON or Server-Sent Events. The
checks and the request are every door's (`apps.doors.operations.answer_call`); a conversation's history
and storing the answer as its turn are REST's."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.sse import EventSourceResponse, format_sse_event

from apps.api import conversations
from apps.api.deps import ReadKey, RuntimeDep
from apps.api.schemas import AnswerIn
from apps.doors import operations
from apps.doors.errors import DoorError
from apps.doors.operations import Caller, record_answer
from apps.orchestration.src.answer_models import AnswerResponse

router = APIRouter(tags=["answer"])


def _event(name: str, data: Any) -> bytes:
    return format_sse_event(event=name, data_str=json.dumps(data, ensure_ascii=False))


@router.post("/answer", response_model=AnswerResponse, summary="Answer a question from the documents, with citations",
             responses={200: {"content": {"text/event-stream": {}},
                              "description": "JSON, or with stream=true Server-Sent Events: `rewritten` (a "
                                             "follow-up's standalone question), `token` events, `round` events "
                                             "of a debate, then `final`"}})
async def answer(body: AnswerIn, request: Request, runtime: RuntimeDep, key: ReadKey) -> Any:
    try:
        # 422 provider, strategy or filters; 403/404 collections: before any work, as every door checks
        pipeline, call = await operations.answer_call(runtime, body, Caller.of_request(key, request.scope["state"]))
    except DoorError as exc:
        raise exc.to_http() from None
    past = await conversations.history(runtime, key, body.conversation_id)  # 404 for another key's
    call = dataclasses.replace(call, history=past)
    if not body.stream:
        result = await pipeline.execute(call)
        record_answer(request.state, result)
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
                record_answer(request.state, event["final"])  # before the last byte: the request log sees it
                final = await conversations.store_answer(runtime, key, body.conversation_id, past, event["final"],
                                                         streaming=True)
                yield _event("final", final.model_dump(mode="json"))

    return EventSourceResponse(events(), headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
