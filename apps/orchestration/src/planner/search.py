"""POST /api/v1/search with a plan: plan the query (under PLANNER_TIMEOUT_MS), search each part, merge.
Without a plan, or with a one-part plan, the search is the plain one, untouched."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, replace

from apps.core import metrics
from apps.core.config import Settings
from apps.llm.factory import ProviderUnavailableError
from apps.orchestration.src.bandit.decision_log import Decision
from apps.orchestration.src.bandit.service import StrategyBandit
from apps.orchestration.src.pipelines import AnswerPipelines
from apps.orchestration.src.planner.plan import Plan
from apps.orchestration.src.planner.planner import QueryPlanner
from apps.orchestration.src.planner.retrieval import retrieve_parts, single, with_plan
from apps.search.types import SearchFilters, SearchResult
from apps.text.analyzer import Analyzer

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PlannedSearch:
    result: SearchResult
    decisions: list[Decision]  # one per part the bandit chose for (none when the strategy was fixed)
    plan: Plan | None

    @property
    def decision(self) -> Decision | None:
        """The first part's decision: the one logged under the request id."""
        return self.decisions[0] if self.decisions else None


def planner_of(pipelines: AnswerPipelines, analyzer: Analyzer, settings: Settings) -> QueryPlanner:
    """The default answer pipeline's planner (searches plan with the model answers use); the rules alone
    when that provider cannot be built."""
    try:
        return pipelines.get().planner
    except ProviderUnavailableError:
        return QueryPlanner(analyzer, settings.planner_max_parts)


async def plan_and_search(planner: QueryPlanner | None, bandit: StrategyBandit, query: str, top_k: int,
                          filters: SearchFilters | None, *, request_id: str, timeout_s: float,
                          strategy: str | None = None, use_bandit: bool = False, replay: bool = False,
                          variant: str = "legacy", cases: bool = False) -> PlannedSearch:
    """`planner=None`: the plain search. Planning that runs out of time searches the query whole and says so.
    `cases`: case memory for the query searched whole, or for each part of a split one."""
    plan: Plan | None = None
    late: list[str] = []
    if planner is not None:
        try:
            plan = await asyncio.wait_for(planner.plan(query), timeout=timeout_s)
        except Exception as exc:  # planning degrades the search, never fails it
            why = "timed out" if isinstance(exc, TimeoutError) else f"{type(exc).__name__}: {exc}"
            log.warning("planning failed; the query is searched whole", extra={"reason": why})
            late = [f"plan {why}: the query was searched whole"]
        if plan is not None and plan.usage.input_tokens + plan.usage.output_tokens and planner.model is not None:
            labels = {"provider": planner.model.provider.name, "model": planner.model.provider.model}
            metrics.LLM_TOKENS.labels(**labels, kind="input").inc(plan.usage.input_tokens)
            metrics.LLM_TOKENS.labels(**labels, kind="output").inc(plan.usage.output_tokens)
            metrics.LLM_COST.labels(**labels).inc(plan.usage.cost_usd)
    if plan is not None and plan.compound:
        planned = await retrieve_parts(bandit, plan, top_k, filters, request_id=request_id, endpoint="search",
                                       strategy=strategy, use_bandit=use_bandit, replay=replay, variant=variant,
                                       cases=cases)
        return PlannedSearch(planned.result, planned.decisions, with_plan(plan, planned))
    retrieval = await bandit.retrieve(query, top_k, filters, request_id=request_id, endpoint="search",
                                      strategy=strategy, use_bandit=use_bandit, replay=replay, variant=variant,
                                      cases=cases)
    result = retrieval.result
    if late:
        result = replace(result, degraded=True, degraded_reasons=[*result.degraded_reasons, *late])
    decisions = [retrieval.decision] if retrieval.decision is not None else []
    return PlannedSearch(result, decisions,
                         with_plan(plan, single(result, retrieval.decision)) if plan is not None else None)
