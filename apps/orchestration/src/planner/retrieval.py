"""Retrieval for a plan: every part searched concurrently with its own strategy (the bandit's choice for
that part, or the default), then one context in which every part keeps its share.

Merging: each of n parts first gets `top_k // n` places for its best hits (a hit two parts found counts
for both), taken in turns by rank; the places left go to the rest of all parts' hits by reciprocal
rank fusion. A part's bandit decision is logged under its own id: the request id for the first part
(feedback on the request reaches it) and `<request id>.p<i>` for the others; so is its case-memory
decision, when the `neural_case_selector` flag is on (each part is its own question: past questions close
to it move its passages, and its hits carry their `case_ids`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

from apps.orchestration.src.bandit.decision_log import Decision
from apps.orchestration.src.bandit.service import StrategyBandit
from apps.orchestration.src.planner.plan import Plan
from apps.search.service import SearchUnavailableError
from apps.search.types import Hit, SearchFilters, SearchResult

log = logging.getLogger(__name__)

RRF_K = 60
_ID_LIMIT = 64  # request ids are at most 64 characters, and so are the decision log's keys


@dataclass(frozen=True)
class PartRetrieval:
    result: SearchResult | None  # None: the part's search failed (`error` says why)
    decision: Decision | None
    error: str | None = None


@dataclass(frozen=True)
class PlannedRetrieval:
    hits: list[Hit]  # the merged context, at most top_k
    owners: list[tuple[int, ...]]  # for each hit, the parts whose own results hold it
    parts: list[PartRetrieval]
    result: SearchResult  # the merged context as one search result (what /search answers)

    @property
    def decisions(self) -> list[Decision]:
        return [p.decision for p in self.parts if p.decision is not None]


def part_request_id(request_id: str, index: int) -> str:
    if index == 0:
        return request_id
    suffix = f".p{index}"
    return request_id[: _ID_LIMIT - len(suffix)] + suffix


def merge(rankings: list[list[Hit]], top_k: int, k: int = RRF_K) -> list[tuple[Hit, tuple[int, ...]]]:
    """Per-part quota, then fusion of the rest (see the module's doc); each hit with the parts that found it."""
    owners: dict[int, list[int]] = {}
    best: dict[int, tuple[int, Hit]] = {}  # each chunk as the part that ranks it highest found it
    for i, hits in enumerate(rankings):
        for rank, hit in enumerate(hits):
            owners.setdefault(hit.chunk_id, []).append(i)
            if hit.chunk_id not in best or rank < best[hit.chunk_id][0]:
                best[hit.chunk_id] = (rank, hit)
    quota = max(1, top_k // max(len(rankings), 1))
    chosen: list[int] = []
    taken: set[int] = set()
    cursors, held = [0] * len(rankings), [0] * len(rankings)
    moved = True
    while moved and len(chosen) < top_k:
        moved = False
        for i, hits in enumerate(rankings):
            if held[i] >= quota or cursors[i] >= len(hits) or len(chosen) >= top_k:
                continue
            hit = hits[cursors[i]]
            cursors[i] += 1
            held[i] += 1  # in the context either way: taken now, or already taken for another part
            if hit.chunk_id not in taken:
                taken.add(hit.chunk_id)
                chosen.append(hit.chunk_id)
            moved = True
    fused: dict[int, float] = {}
    for hits in rankings:
        for rank, hit in enumerate(hits, start=1):
            if hit.chunk_id not in taken:
                fused[hit.chunk_id] = fused.get(hit.chunk_id, 0.0) + 1.0 / (k + rank)
    rest = sorted(fused, key=lambda cid: (-fused[cid], cid))[: top_k - len(chosen)]
    return [(best[cid][1], tuple(owners[cid])) for cid in [*chosen, *rest]]


def merged_cases(results: list[SearchResult]) -> dict[str, Any] | None:
    """What case memory did over the parts (None: it was off): every close case any part considered, and
    whether cases changed any part's ranking."""
    used = [r.cases for r in results if r.cases is not None]
    if not used:
        return None
    versions = [c["selector_version"] for c in used if c["selector_version"] is not None]
    rules = [c["rule"] for c in used if c["rule"] is not None]
    return {"selector_version": max(versions) if versions else None, "rule": any(rules) if rules else None,
            "case_ids": sorted({i for c in used for i in c["case_ids"]}), "changed": any(c["changed"] for c in used)}


async def retrieve_parts(bandit: StrategyBandit, plan: Plan, top_k: int, filters: SearchFilters | None, *,
                         request_id: str, endpoint: str, strategy: str | None = None, use_bandit: bool = False,
                         replay: bool = False, variant: str = "legacy", cases: bool = False) -> PlannedRetrieval:
    """Search every part at once (each for the whole `top_k`, so a part can fill places the others leave)
    and merge. A failing part is reported and the others served; all failing raises SearchUnavailableError.
    `cases`: each part with case memory."""
    start = time.perf_counter()
    outcomes = await asyncio.gather(*(
        bandit.retrieve(part.query, top_k, filters, request_id=part_request_id(request_id, i), endpoint=endpoint,
                        strategy=strategy, use_bandit=use_bandit, replay=replay, variant=variant, cases=cases)
        for i, part in enumerate(plan.parts)), return_exceptions=True)
    parts: list[PartRetrieval] = []
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            if not isinstance(outcome, SearchUnavailableError):
                raise outcome
            parts.append(PartRetrieval(None, None, str(outcome)))
        else:
            parts.append(PartRetrieval(outcome.result, outcome.decision))
    if all(p.result is None for p in parts):
        raise SearchUnavailableError("; ".join(p.error or "" for p in parts))
    merged = merge([p.result.hits if p.result else [] for p in parts], top_k)
    reasons = [f"part {i + 1}: {reason}" for i, p in enumerate(parts)
               for reason in ([p.error] if p.error else p.result.degraded_reasons if p.result else [])]
    results = [p.result for p in parts if p.result is not None]
    strategies = list(dict.fromkeys(r.strategy for r in results))
    timings = {f"part{i + 1}_{leg}": ms for i, p in enumerate(parts) if p.result
               for leg, ms in p.result.timings_ms.items()}
    result = SearchResult(
        hits=[hit for hit, _ in merged],
        strategy=strategies[0] if len(strategies) == 1 else "+".join(strategies),
        latency_ms=round((time.perf_counter() - start) * 1000, 3),
        total_candidates=sum(r.total_candidates for r in results),
        degraded=bool(reasons), degraded_reasons=reasons, timings_ms=timings,
        cached=all(r.cached for r in results), cases=merged_cases(results),
    )
    return PlannedRetrieval([hit for hit, _ in merged], [owners for _, owners in merged], parts, result)


def single(result: SearchResult, decision: Decision | None) -> PlannedRetrieval:
    """A one-part plan's retrieval is the plain search's, untouched."""
    part = PartRetrieval(result, decision)
    return PlannedRetrieval(list(result.hits), [(0,)] * len(result.hits), [part], result)


def with_plan(plan: Plan, retrieval: PlannedRetrieval, kept: list[set[int]] | None = None) -> Plan:
    """The plan with each part's strategy and the chunk ids it holds in the context: those its own results
    hold (and, with `kept`, that count as evidence by its own ranks)."""
    per_part: list[list[int]] = [[] for _ in plan.parts]
    for hit, owners in zip(retrieval.hits, retrieval.owners, strict=True):
        for i in owners:
            if kept is None or hit.chunk_id in kept[i]:
                per_part[i].append(hit.chunk_id)
    return plan.retrieved([(p.result.strategy if p.result else None, ids)
                           for p, ids in zip(retrieval.parts, per_part, strict=True)])
