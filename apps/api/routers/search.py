"""POST /api/v1/search — hybrid retrieval."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request

from apps.api import conversations
from apps.api.deps import ReadKey, RuntimeDep, VisibilityDep, narrowed
from apps.api.schemas import BanditOut, CasesOut, HitOut, SearchRequest, SearchResponse, to_filters
from apps.orchestration.src.planner.search import plan_and_search, planner_of
from apps.search.service import SearchUnavailableError, UnknownStrategyError

router = APIRouter(tags=["search"])


@router.post("/search", response_model=SearchResponse, summary="Hybrid search over the corpus")
@router.post("/search/", response_model=SearchResponse, include_in_schema=False)
async def search(body: SearchRequest, request: Request, runtime: RuntimeDep, key: ReadKey,
                 visibility: VisibilityDep) -> SearchResponse:
    try:
        strategy = runtime.search.resolve(body.strategy).name if body.strategy else None
    except UnknownStrategyError as exc:
        raise HTTPException(422, str(exc)) from None
    assignment = request.state.assignment
    filters = to_filters(body.filters, await narrowed(runtime, visibility, body.collections))  # 403: not its own
    past = await conversations.history(runtime, key, body.conversation_id)  # 404 for another key's
    rewrite = await conversations.rewrite_query(runtime, body.q, past, filters)  # a follow-up made standalone
    planned = body.plan if body.plan is not None else assignment.flags.get("meta_planner", False)
    try:
        retrieval = await plan_and_search(
            planner_of(runtime.pipelines, runtime.search.analyzer, runtime.settings) if planned else None,
            runtime.bandit, rewrite.question, body.final_topk, filters, request_id=request.state.request_id,
            timeout_s=runtime.settings.planner_timeout_ms / 1000,
            strategy=strategy, use_bandit=strategy is None and assignment.flags["soft_q_bandit"],
            replay=assignment.flags["experience_replay"], variant=assignment.variant,
            cases=assignment.flags.get("neural_case_selector", False),
        )
    except SearchUnavailableError as exc:
        raise HTTPException(503, f"search is unavailable: {exc}") from None
    result, decision = retrieval.result, retrieval.decision
    for part_decision in retrieval.decisions:  # one per part of a plan
        runtime.bandit.commit(part_decision)
    request.state.strategy = result.strategy
    await conversations.store_search(runtime, key, body.conversation_id, request.state.request_id, body.q, rewrite,
                                     result.hits)
    return SearchResponse(
        hits=[HitOut(chunk_id=h.chunk_id, doc_id=h.doc_id, score=h.score, text=h.text, title=h.title,
                     source_url=h.source_url, taxonomy_path=h.taxonomy_path, ranks=h.ranks, collection=h.collection,
                     case_ids=h.case_ids if result.cases is not None else None)
              for h in result.hits],
        cases=CasesOut(**result.cases) if result.cases is not None else None,
        strategy=result.strategy,
        latency_ms=result.latency_ms,
        request_id=request.state.request_id,
        total_candidates=result.total_candidates,
        degraded=result.degraded,
        degraded_reasons=result.degraded_reasons,
        cached=result.cached,
        pipeline_variant=assignment.variant,
        bandit=BanditOut(state=decision.state, probabilities=decision.probabilities,
                         policy_version=decision.policy_version) if decision else None,
        plan=retrieval.plan.to_dict() if retrieval.plan is not None else None,
        rewritten_question=rewrite.question if rewrite.rewritten else None,
        conversation_id=body.conversation_id,
    )
