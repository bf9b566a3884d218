"""POST /api/v1/feedback: the explicit reward for a bandit decision, joined by request id."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException

from apps.api.deps import ReadKey, RuntimeDep
from apps.api.schemas import FeedbackIn, FeedbackOut
from apps.orchestration.src.bandit.service import UnknownDecisionError

router = APIRouter(tags=["learning"])


@router.post("/feedback", response_model=FeedbackOut, summary="Rate a search or answer (the bandit's reward)")
async def feedback(body: FeedbackIn, runtime: RuntimeDep, _: ReadKey) -> FeedbackOut:
    try:
        outcome = await runtime.bandit.feedback(
            body.request_id, rating=body.rating, helpful=body.helpful, relevant_chunk_ids=body.relevant_chunk_ids)
    except UnknownDecisionError as exc:
        raise HTTPException(404, str(exc)) from None
    return FeedbackOut(request_id=outcome.request_id, reward=outcome.reward, accepted=outcome.accepted,
                       learned=outcome.learned)
