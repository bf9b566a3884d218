"""POST /api/v1/feedback: what a key thinks of an answer or a search, joined by request id; the rules (what
is kept, what is a reward, whose requests a key may rate) are `apps.doors.operations.feedback`, which the
MCP door's `feedback` tool calls too."""

from __future__ import annotations

from fastapi import APIRouter, Request

from apps.api.deps import ReadKey, RuntimeDep
from apps.api.schemas import FeedbackIn, FeedbackOut
from apps.doors import operations
from apps.doors.errors import DoorError
from apps.doors.operations import Caller

router = APIRouter(tags=["learning"])


@router.post("/feedback", response_model=FeedbackOut,
             summary="Rate an answer or search (the bandit's reward), mark its passages, comment")
async def feedback(body: FeedbackIn, request: Request, runtime: RuntimeDep, key: ReadKey) -> FeedbackOut:
    try:
        return await operations.feedback(runtime, body, Caller.of_request(key, request.scope["state"]))
    except DoorError as exc:
        raise exc.to_http() from None
