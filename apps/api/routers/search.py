"""POST /api/v1/search — hybrid retrieval (`apps.doors.operations.search_call` and `run_search`, what every
door runs), with REST's conversations around it: a follow-up is made standalone against the conversation's
earlier turns and the search is stored as its next turn."""

from __future__ import annotations

from fastapi import APIRouter, Request

from apps.api import conversations
from apps.api.deps import ReadKey, RuntimeDep
from apps.api.schemas import SearchRequest, SearchResponse
from apps.doors import operations
from apps.doors.errors import DoorError
from apps.doors.operations import Caller

router = APIRouter(tags=["search"])


@router.post("/search", response_model=SearchResponse, summary="Hybrid search over the corpus")
@router.post("/search/", response_model=SearchResponse, include_in_schema=False)
async def search(body: SearchRequest, request: Request, runtime: RuntimeDep, key: ReadKey) -> SearchResponse:
    caller = Caller.of_request(key, request.scope["state"])
    try:
        call = await operations.search_call(runtime, body, caller)  # 422 strategy; 403/404 collections
        past = await conversations.history(runtime, key, body.conversation_id)  # 404 for another key's
        rewrite = await conversations.rewrite_query(runtime, body.q, past, call.filters)  # a follow-up made standalone
        searched = await operations.run_search(runtime, call, caller, rewrite.question)
    except DoorError as exc:
        raise exc.to_http() from None
    request.state.strategy = searched.response.strategy
    await conversations.store_search(runtime, key, body.conversation_id, caller.request_id, body.q, rewrite,
                                     searched.hits)
    return searched.response.model_copy(update={
        "rewritten_question": rewrite.question if rewrite.rewritten else None,
        "conversation_id": body.conversation_id,
    })
