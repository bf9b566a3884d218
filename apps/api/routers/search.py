"""POST /api/v1/search — hybrid retrieval."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request

from apps.api.deps import ReadKey, RuntimeDep
from apps.api.schemas import BanditOut, HitOut, SearchFiltersIn, SearchRequest, SearchResponse
from apps.search.service import SearchUnavailableError, UnknownStrategyError
from apps.search.types import SearchFilters

router = APIRouter(tags=["search"])


def to_filters(f: SearchFiltersIn | None) -> SearchFilters:
    if f is None:
        return SearchFilters()
    return SearchFilters(
        taxonomy_path=f.taxonomy_path,  # type: ignore[arg-type]  (normalised to str by the schema)
        language=f.language,
        doc_ids=tuple(f.doc_ids) if f.doc_ids is not None else None,
        metadata=f.metadata or None,
    )


@router.post("/search", response_model=SearchResponse, summary="Hybrid search over the corpus")
@router.post("/search/", response_model=SearchResponse, include_in_schema=False)
async def search(body: SearchRequest, request: Request, runtime: RuntimeDep, _: ReadKey) -> SearchResponse:
    try:
        strategy = runtime.search.resolve(body.strategy).name if body.strategy else None
    except UnknownStrategyError as exc:
        raise HTTPException(422, str(exc)) from None
    assignment = request.state.assignment
    try:
        retrieval = await runtime.bandit.retrieve(
            body.q, body.final_topk, to_filters(body.filters), request_id=request.state.request_id,
            endpoint="search", strategy=strategy, use_bandit=strategy is None and assignment.flags["soft_q_bandit"],
            replay=assignment.flags["experience_replay"], variant=assignment.variant,
        )
    except SearchUnavailableError as exc:
        raise HTTPException(503, f"search is unavailable: {exc}") from None
    result, decision = retrieval.result, retrieval.decision
    runtime.bandit.commit(decision)
    request.state.strategy = result.strategy
    return SearchResponse(
        hits=[HitOut(chunk_id=h.chunk_id, doc_id=h.doc_id, score=h.score, text=h.text, title=h.title,
                     source_url=h.source_url, taxonomy_path=h.taxonomy_path, ranks=h.ranks) for h in result.hits],
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
    )
