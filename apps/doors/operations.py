"""What every door does, once: search, answer setup, a document, feedback, collections.

The REST routes (`apps/api/routers/search.py`, `answer.py`, `documents.py`, `feedback.py`) and the other
doors (MCP, A2A, the chat API) all call these with a `Caller`, so a door's result for a request is the
REST API's result for it. REST keeps only what is its own around them: conversations (history, a
follow-up's rewrite, storing the turn) and what the request log records.

The caller's mistakes are `DoorError`s (REST's status and sentence); each door turns them into its
protocol's error, REST into its HTTPException. Filters beyond the caps are the search service's own
`FilterLimitError`, let through as it is: the HTTP app answers it for every route, the MCP and A2A doors
through `errors.refusals`.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from apps.api.schemas import (
    AnswerIn,
    BanditOut,
    CasesOut,
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
from apps.orchestration.src.bandit.service import UnknownDecisionError
from apps.orchestration.src.conversations.types import HistoryTurn
from apps.orchestration.src.planner.retrieval import part_request_id
from apps.orchestration.src.planner.search import plan_and_search, planner_of
from apps.rollout.flags import Assignment, FlagContext
from apps.runtime import Runtime
from apps.search.service import SearchUnavailableError, UnknownStrategyError
from apps.search.types import Hit, SearchFilters


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
        """From an HTTP request's state (`request.scope["state"]`), as the request context middleware and
        the key check left it."""
        assignment: Assignment = state["assignment"]
        return cls(key, state["request_id"], assignment.flags, assignment.variant, state["visibility"])

    @classmethod
    def of_process(cls, runtime: Runtime, key: KeyInfo, visibility: Visibility) -> Caller:
        """For a call outside HTTP (MCP over stdio): a fresh request id, the flags the flag service serves."""
        request_id = uuid.uuid4().hex
        assignment = runtime.flags.assign(FlagContext(request_id=request_id))
        return cls(key, request_id, assignment.flags, assignment.variant, visibility)


# --- search ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SearchCall:
    """A search request that passed the checks (its strategy exists, the key may use its collections)."""

    body: SearchRequest
    strategy: str | None
    filters: SearchFilters  # the request's filters within what the caller may see


@dataclass(frozen=True)
class Searched:
    response: SearchResponse
    hits: Sequence[Hit]  # the service's hits behind the response (what REST keeps of a conversation's turn)


async def search_call(runtime: Runtime, body: SearchRequest, caller: Caller) -> SearchCall:
    """422 for an unknown strategy, 403/404 for a collection the key may not use or that does not exist."""
    try:
        strategy = runtime.search.resolve(body.strategy).name if body.strategy else None
    except UnknownStrategyError as exc:
        raise DoorError(422, str(exc)) from None
    filters = to_filters(body.filters, await visibility.scope(runtime, caller.visibility, body.collections))
    return SearchCall(body, strategy, filters)


async def run_search(runtime: Runtime, call: SearchCall, caller: Caller, question: str | None = None) -> Searched:
    """The search, with the caller's flags (planner, bandit, replay, case memory). `question`: what to
    search for instead of the request's `q` (REST: a conversation's follow-up made standalone)."""
    body, flags = call.body, caller.flags
    planned = body.plan if body.plan is not None else flags.get("meta_planner", False)
    try:
        retrieval = await plan_and_search(
            planner_of(runtime.pipelines, runtime.search.analyzer, runtime.settings) if planned else None,
            runtime.bandit, question or body.q, body.final_topk, call.filters, request_id=caller.request_id,
            timeout_s=runtime.settings.planner_timeout_ms / 1000,
            strategy=call.strategy, use_bandit=call.strategy is None and flags.get("soft_q_bandit", False),
            replay=flags.get("experience_replay", False), variant=caller.variant,
            cases=flags.get("neural_case_selector", False),
        )
    except SearchUnavailableError as exc:
        raise DoorError(503, f"search is unavailable: {exc}") from None
    result, decision = retrieval.result, retrieval.decision
    for part_decision in retrieval.decisions:  # one per part of a plan
        runtime.bandit.commit(part_decision)
    response = SearchResponse(
        hits=[HitOut(chunk_id=h.chunk_id, doc_id=h.doc_id, score=h.score, text=h.text, title=h.title,
                     source_url=h.source_url, taxonomy_path=h.taxonomy_path, ranks=h.ranks, collection=h.collection,
                     case_ids=h.case_ids if result.cases is not None else None)
              for h in result.hits],
        cases=CasesOut(**result.cases) if result.cases is not None else None,
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
    return Searched(response, result.hits)


async def search(runtime: Runtime, body: SearchRequest, caller: Caller) -> SearchResponse:
    """POST /api/v1/search without a conversation."""
    return (await run_search(runtime, await search_call(runtime, body, caller), caller)).response


# --- answer ------------------------------------------------------------------------------------------------


async def answer_call(runtime: Runtime, body: AnswerIn, caller: Caller,
                      history: tuple[HistoryTurn, ...] = ()) -> tuple[AnswerPipeline, AnswerRequest]:
    """The pipeline and the request that answer `body`, checked before any work: 422 for an unavailable
    provider or an unknown strategy, 403/404 for the collections, filters beyond the caps (the service's
    `FilterLimitError`: inside the graph a failing retrieve only degrades). `history`: the conversation's
    earlier turns (a follow-up is rewritten against them)."""
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
    runtime.search.check_filters(filters)
    return pipeline, AnswerRequest(question=body.q, mode=body.mode, top_k=body.final_topk, filters=filters,
                                   strategy=body.strategy, request_id=caller.request_id, flags=caller.flags,
                                   variant=caller.variant, history=history)


async def answer(runtime: Runtime, body: AnswerIn, caller: Caller,
                 history: tuple[HistoryTurn, ...] = ()) -> AnswerResponse:
    pipeline, call = await answer_call(runtime, body, caller, history)
    return await pipeline.execute(call)


async def answer_events(runtime: Runtime, body: AnswerIn, caller: Caller,
                        history: tuple[HistoryTurn, ...] = ()) -> AsyncIterator[dict[str, Any]]:
    """The answer graph's stream: {"token"}, {"reset"}, {"round"} events, then {"final": AnswerResponse}.
    The checks run before the first event, so a refusal is an error, not a broken stream."""
    pipeline, call = await answer_call(runtime, body, caller, history)
    return pipeline.execute_stream(call)


def record_answer(state: Any, result: AnswerResponse) -> None:
    """What the request context middleware logs with an answered HTTP request (strategy, quality, LLM
    usage): `state` is the request's `request.state`."""
    state.strategy = result.strategy
    state.quality = result.confidence
    state.llm = result.llm_usage()


# --- documents ---------------------------------------------------------------------------------------------


class DocumentText(DocumentOut):
    chunks: list[ChunkOut]


def document_out(record: catalog.DocumentRecord) -> DocumentOut:
    d = record.document
    return DocumentOut.model_validate({**{c: getattr(d, c) for c in DocumentOut.model_fields
                                          if c not in ("metadata", "collection", "access_groups")},
                                       "metadata": d.metadata_ or {}, "collection": record.collection,
                                       "access_groups": record.access_groups})


async def find_document(session: AsyncSession, document_id: str, view: Visibility) -> catalog.DocumentRecord:
    record = await catalog.get(session, document_id, view)
    if record is None:  # hidden is not found: a key learns nothing of what it may not see
        raise DoorError(404, f"no document with id {document_id!r}")
    return record


async def get_document(runtime: Runtime, document_id: str, caller: Caller) -> DocumentText:
    """A document the caller may see with its chunks (REST's GET /documents/{id} and its /chunks)."""
    async with runtime.sessions() as session:
        record = await find_document(session, document_id, caller.visibility)
        chunks = await catalog.chunks(session, document_id, caller.visibility)
    return DocumentText.model_validate({**document_out(record).model_dump(),
                                        "chunks": [ChunkOut.model_validate(c, from_attributes=True) for c in chunks]})


# --- feedback ----------------------------------------------------------------------------------------------


def _reward_signal(body: FeedbackIn) -> bool:
    if body.rating is not None or body.helpful is not None:
        return True
    return body.relevant_chunk_ids is not None and body.irrelevant_chunk_ids is None


async def feedback(runtime: Runtime, body: FeedbackIn, caller: Caller) -> FeedbackOut:
    """What a key thinks of an answer or a search, joined by request id.

    The row (rating, helpful, passages marked relevant and irrelevant, comment) is kept per key and request
    and merged as the judgement changes. The rating (or helpful) is the reward of the bandit decision behind
    the request, the first one standing; relevant_chunk_ids alone is one too (the nDCG of the served ranking
    against them). With irrelevant_chunk_ids the lists are per-passage marks, kept for the case memory and
    no reward: the Ask page's thumbs on sources. A key rates only its own requests: a request with neither a
    decision of this key, nor a turn of one of its conversations, nor a case-memory request of it is a 404.
    """
    key = caller.key
    endpoint = await runtime.conversations.turn(key.id, body.request_id)
    # A turn is stored before its response leaves; a decision may wait in another worker's buffer.
    decision = await runtime.bandit.decisions.get(body.request_id, wait=endpoint is None)
    if decision is not None and decision.key_id != key.id:
        decision = None  # another key's request: as if there were none
    # Served with case memory on (neural_case_selector): the merged feedback makes the request's case.
    cased = await runtime.cases.endpoint_of(key.id, body.request_id, wait=endpoint is None and decision is None)
    if endpoint is None and decision is None and cased is None:
        raise DoorError(404, f"no bandit decision, conversation turn or case-memory request was logged for "
                             f"request id {body.request_id!r}")
    row = await runtime.feedback.record(key.id, body.request_id, endpoint or (decision.endpoint if decision else cased),
                                        body.model_dump(exclude={"request_id"}))
    if cased is not None:
        # A split question's parts were served under their own ids (`<id>.p<i>`): each part is its own past
        # question, with the passages of the merged context it served and the marks on them.
        for index in range(runtime.settings.planner_max_parts):
            await runtime.cases.from_feedback(key.id, part_request_id(body.request_id, index), row, wait=index == 0)
    if decision is None or not _reward_signal(body):
        return FeedbackOut(request_id=body.request_id, reward=None, accepted=True, learned=False)
    try:
        outcome = await runtime.bandit.feedback(
            body.request_id, rating=body.rating, helpful=body.helpful, relevant_chunk_ids=body.relevant_chunk_ids,
            rater=key.id)
    except UnknownDecisionError as exc:  # pruned in between
        raise DoorError(404, str(exc)) from None
    return FeedbackOut(request_id=outcome.request_id, reward=outcome.reward, accepted=outcome.accepted,
                       learned=outcome.learned)


# --- collections -------------------------------------------------------------------------------------------


async def list_collections(runtime: Runtime, caller: Caller) -> list[visibility.Collection]:
    return await visibility.visible(runtime, caller.visibility)
