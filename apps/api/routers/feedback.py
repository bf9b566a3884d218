"""POST /api/v1/feedback: what a key thinks of an answer or a search, joined by request id.

The row (rating, helpful, passages marked relevant and irrelevant, comment) is kept per key and request
and merged as the judgement changes. The rating (or helpful) is the reward of the bandit decision behind
the request, the first one standing; relevant_chunk_ids alone is one too (the nDCG of the served ranking
against them). With irrelevant_chunk_ids the lists are per-passage marks, kept for the case memory and
no reward: the Ask page's thumbs on sources. A key rates only its own requests: a request with neither a
decision of this key nor a turn of one of its conversations is a 404.
"""

from __future__ import annotations

from fastapi import APIRouter, HTTPException

from apps.api.deps import ReadKey, RuntimeDep
from apps.api.schemas import FeedbackIn, FeedbackOut
from apps.orchestration.src.bandit.service import UnknownDecisionError

router = APIRouter(tags=["learning"])


def _reward_signal(body: FeedbackIn) -> bool:
    if body.rating is not None or body.helpful is not None:
        return True
    return body.relevant_chunk_ids is not None and body.irrelevant_chunk_ids is None


@router.post("/feedback", response_model=FeedbackOut,
             summary="Rate an answer or search (the bandit's reward), mark its passages, comment")
async def feedback(body: FeedbackIn, runtime: RuntimeDep, key: ReadKey) -> FeedbackOut:
    endpoint = await runtime.conversations.turn(key.id, body.request_id)
    # A turn is stored before its response leaves; a decision may wait in another worker's buffer.
    decision = await runtime.bandit.decisions.get(body.request_id, wait=endpoint is None)
    if decision is not None and decision.key_id != key.id:
        decision = None  # another key's request: as if there were none
    # Served with case memory on (neural_case_selector): the merged feedback makes the request's case.
    cased = await runtime.cases.endpoint_of(key.id, body.request_id, wait=endpoint is None and decision is None)
    if endpoint is None and decision is None and cased is None:
        raise HTTPException(404, f"no bandit decision, conversation turn or case-memory request was logged for "
                                 f"request id {body.request_id!r}")
    row = await runtime.feedback.record(key.id, body.request_id, endpoint or (decision.endpoint if decision else cased),
                                        body.model_dump(exclude={"request_id"}))
    if cased is not None:
        await runtime.cases.from_feedback(key.id, body.request_id, row)
    if decision is None or not _reward_signal(body):
        return FeedbackOut(request_id=body.request_id, reward=None, accepted=True, learned=False)
    try:
        outcome = await runtime.bandit.feedback(
            body.request_id, rating=body.rating, helpful=body.helpful, relevant_chunk_ids=body.relevant_chunk_ids,
            rater=key.id)
    except UnknownDecisionError as exc:  # pruned in between
        raise HTTPException(404, str(exc)) from None
    return FeedbackOut(request_id=outcome.request_id, reward=outcome.reward, accepted=outcome.accepted,
                       learned=outcome.learned)
