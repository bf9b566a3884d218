"""What the doors do, once: search, answer, a document, feedback, collections.

Each calls the services the REST routes call, the same way (`apps/api/routers/search.py`, `answer.py`,
`documents.py`, `feedback.py`; conversations are REST's alone), so a door's result for a request is the
REST API's result for it. The
caller's mistakes are `DoorError`s (the REST route's status and sentence); each door turns them into its
protocol's error.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from fastapi import HTTPException

from apps.api.routers.documents import _document_out
from apps.api.routers.feedback import feedback as rest_feedback
from apps.api.schemas import (
    AnswerIn,
    BanditOut,
    ChunkOut,
    DocumentOut,
    FeedbackIn,
    FeedbackOut,
    HitOut,
    SearchRequest,
    SearchResponse,
    to_filters,
)
from apps.core.api_keys import KeyInfo
from apps.core.visibility import Visibility
from apps.doors import visibility
from apps.doors.errors import DoorError
from apps.ingestion import catalog
from apps.llm.factory import ProviderUnavailableError
from apps.orchestration.src.answer_graph import AnswerPipeline
from apps.orchestration.src.answer_models import AnswerRequest, AnswerResponse
from apps.orchestration.src.conversations.types import HistoryTurn
from apps.orchestration.src.planner.search import plan_and_search, planner_of
from apps.rollout.flags import Assignment, FlagContext
from apps.runtime import Runtime
from apps.search.service import SearchUnavailableError, UnknownStrategyError
from apps.search.types import FilterLimitError


@dataclass(frozen=True)
class Caller:
    """Who is asking and with which flags: what a REST route reads from its request."""

    key: KeyInfo
    request_id: str
    flags: dict[str, bool]
    variant: str
    visibility: Visibility  # what the key (and a trusted proxy's end user) may see, from the key check

    @classmethod
    def of_request(cls, key: KeyInfo, state: dict[str, Any]) -> Caller:
        """From an HTTP request's state, as the request context middleware and the key check left it."""
        assignment: Assignment = state["assignment"]
        return cls(key, state["request_id"], assignment.flags, assignment.variant, state["visibility"])

    @classmethod
    def of_process(cls, runtime: Runtime, key: KeyInfo, visibility: Visibility) -> Caller:
        """For a call outside HTTP (MCP over stdio): a fresh request id, the flags the flag service serves."""
        request_id = uuid.uuid4().hex
        assignment = runtime.flags.assign(FlagContext(request_id=request_id))
        return cls(key, request_id, assignment.flags, assignment.variant, visibility)


class DocumentText(DocumentOut):
    chunks: list[ChunkOut]


async def search(runtime: Runtime, body: SearchRequest, caller: Caller) -> SearchResponse:
    try:
        strategy = runtime.search.resolve(body.strategy).name if body.strategy else None
    except UnknownStrategyError as exc:
        raise DoorError(422, str(exc)) from None
    filters = to_filters(body.filters, await visibility.scope(runtime, caller.visibility, body.collections))
    planned = body.plan if body.plan is not None else caller.flags.get("meta_planner", False)
    try:
        retrieval = await plan_and_search(
            planner_of(runtime.pipelines, runtime.search.analyzer, runtime.settings) if planned else None,
            runtime.bandit, body.q, body.final_topk, filters, request_id=caller.request_id,
            timeout_s=runtime.settings.planner_timeout_ms / 1000,
            strategy=strategy, use_bandit=strategy is None and caller.flags.get("soft_q_bandit", False),
            replay=caller.flags.get("experience_replay", False), variant=caller.variant,
        )
    except FilterLimitError as exc:
        raise DoorError(422, f"filters: {exc}") from None
    except SearchUnavailableError as exc:
        raise DoorError(503, f"search is unavailable: {exc}") from None
    result, decision = retrieval.result, retrieval.decision
    for part_decision in retrieval.decisions:  # one per part of a plan
        runtime.bandit.commit(part_decision)
    return SearchResponse(
        hits=[HitOut(chunk_id=h.chunk_id, doc_id=h.doc_id, score=h.score, text=h.text, title=h.title,
                     source_url=h.source_url, taxonomy_path=h.taxonomy_path, ranks=h.ranks, collection=h.collection)
              for h in result.hits],
        strategy=result.strategy,
        latency_ms=result.latency_ms,
        request_id=caller.request_id,
        total_candidates=result.total_candidates,
        degraded=result.degraded,
        degraded_reasons=result.degraded_reasons,
        cached=result.cached,
        pipeline_variant=caller.variant,
        bandit=BanditOut(state=decision.state, probabilities=decision.probabilities,
                         policy_version=decision.policy_version) if decision else None,
        plan=retrieval.plan.to_dict() if retrieval.plan is not None else None,
    )


async def _answer_call(runtime: Runtime, body: AnswerIn, caller: Caller,
                       history: tuple[HistoryTurn, ...]) -> tuple[AnswerPipeline, AnswerRequest]:
    try:
        pipeline = runtime.pipelines.get(body.provider)
    except ProviderUnavailableError as exc:
        raise DoorError(422, str(exc)) from None
    if body.strategy is not None:
        try:
            runtime.search.resolve(body.strategy)
        except ValueError as exc:
            raise DoorError(422, str(exc)) from None
    # Retrieval, citations and a debate's evidence see only this: the filters travel with the request.
    filters = to_filters(body.filters, await visibility.scope(runtime, caller.visibility, body.collections))
    try:
        runtime.search.check_filters(filters)
    except FilterLimitError as exc:
        raise DoorError(422, f"filters: {exc}") from None
    return pipeline, AnswerRequest(question=body.q, mode=body.mode, top_k=body.final_topk, filters=filters,
                                   strategy=body.strategy, request_id=caller.request_id, flags=caller.flags,
                                   variant=caller.variant, history=history)


async def answer(runtime: Runtime, body: AnswerIn, caller: Caller,
                 history: tuple[HistoryTurn, ...] = ()) -> AnswerResponse:
    """`history`: the conversation's earlier turns (a follow-up is rewritten against them, as in REST's
    conversations)."""
    pipeline, call = await _answer_call(runtime, body, caller, history)
    return await pipeline.execute(call)


async def answer_events(runtime: Runtime, body: AnswerIn, caller: Caller,
                        history: tuple[HistoryTurn, ...] = ()) -> AsyncIterator[dict[str, Any]]:
    """The answer graph's stream: {"token"}, {"reset"}, {"round"} events, then {"final": AnswerResponse}.
    The checks run before the first event, so a refusal is an error, not a broken stream."""
    pipeline, call = await _answer_call(runtime, body, caller, history)
    return pipeline.execute_stream(call)


async def get_document(runtime: Runtime, document_id: str, caller: Caller) -> DocumentText:
    """A document the caller may see with its chunks; another (or none) is REST's 404."""
    async with runtime.sessions() as session:
        record = await catalog.get(session, document_id, caller.visibility)
        if record is None:
            raise DoorError(404, f"no document with id {document_id!r}")
        chunks = await catalog.chunks(session, document_id, caller.visibility)
    out = _document_out(record)
    return DocumentText.model_validate({**out.model_dump(),
                                        "chunks": [ChunkOut.model_validate(c, from_attributes=True) for c in chunks]})


async def feedback(runtime: Runtime, body: FeedbackIn, caller: Caller) -> FeedbackOut:
    """REST's feedback itself (the route function: it joins decisions, conversation turns and the feedback
    store per key)."""
    try:
        return await rest_feedback(body, runtime, caller.key)
    except HTTPException as exc:
        raise DoorError.from_http(exc) from None


async def list_collections(runtime: Runtime, caller: Caller) -> list[visibility.Collection]:
    return await visibility.visible(runtime, caller.visibility)
