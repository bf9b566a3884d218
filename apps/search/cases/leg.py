"""The case leg of a search: past questions close to the query, the passages they judged, the selector's
decision, and the decision log.

    query terms → past questions sharing enough of them? (no: the plain ranking, untouched, no embedding)
    → query vector (the dense leg's, when it ran) → the k closest by cosine among them
    → their judged passages, each checked against what this request may see → selector → new ranking

Cases never cross collections or access groups: only cases of collections the request may see are
compared, and a case is used only when every passage it judged passes the request's visibility predicate
(apps/core/visibility.py, in the same SQL as the search); a passage it would add must also pass the
request's filters.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np

from apps.core import metrics
from apps.core.flushed_log import FlushedLog
from apps.core.models import utcnow
from apps.core.visibility import Visibility
from apps.search.cases.bank import CaseBank
from apps.search.cases.features import Candidate
from apps.search.cases.features import candidates as make_candidates
from apps.search.cases.selector import Decision, Selector
from apps.search.cases.store import CaseStore
from apps.search.cases.types import CaseQuery, CaseSelection, Neighbour, Ranking
from apps.search.types import Hit, SearchFilters

log = logging.getLogger(__name__)


def _describe(row: dict[str, object]) -> dict[str, object]:
    request_id = str(row.get("request_id", ""))
    return {"request_id": request_id[:100], "request_id_length": len(request_id)}


def log_rows(found: list[Candidate], decision: Decision, ranking: Ranking) -> list[dict[str, Any]]:
    """What the decision log keeps of each candidate. A passage a case judged relevant is one of the
    selector's decisions: `base` the plain ranking's probability at its place, `mu` the chance it was
    admitted, `admitted` whether it was (what off-policy evaluation reads; the features, what the batch
    update learns from)."""
    now_at = {cid: i + 1 for i, cid in enumerate(decision.order)}

    def moved(chunk_id: int) -> int:
        """+1 moved up (or in), -1 dropped, 0 where the plain ranking had it."""
        before, after = ranking.rank(chunk_id) or len(now_at) + 1, now_at.get(chunk_id, len(now_at) + 1)
        return (after < before) - (after > before)

    return [{"chunk_id": c.chunk_id, "case_id": c.case_id, "collection": c.collection, "judgement": c.judgement,
             "p": p, "moved": moved(c.chunk_id), "base": decision.base.get(c.chunk_id),
             "mu": decision.propensities.get(c.chunk_id), "admitted": c.chunk_id in decision.hits,
             "features": [round(float(x), 6) for x in c.features]}
            for c, p in zip(found, decision.probabilities, strict=True)]


class CaseLeg:
    def __init__(self, store: CaseStore, bank: CaseBank, selector: Selector, *, neighbours: int, min_cosine: float,
                 min_lexical: float, flush_interval_s: float = 0.2) -> None:
        self.store = store
        self.bank = bank
        self.selector = selector
        self.k = neighbours
        self.min_cosine = min_cosine
        self.min_lexical = min_lexical
        self.flush_interval_s = flush_interval_s
        self._log: FlushedLog[dict[str, object]] = FlushedLog("case-decisions", store.engine, store.insert_decisions,
                                                              _describe, flush_interval_s)

    async def plausible(self, terms: list[str], collections: frozenset[str] | None) -> bool:
        """Whether some past question of these collections shares enough of the query's terms: only then
        is the query vector needed (a search starts embedding it beside its legs)."""
        await self.bank.refresh()
        return any(i.neighbours(terms, None, self.k, self.min_cosine, self.min_lexical)[1]
                   for i in self.bank.indexes(collections))

    async def neighbours(self, terms: list[str], vector: Callable[[], Awaitable[np.ndarray]],
                         collections: frozenset[str] | None) -> list[Neighbour]:
        """The close past questions over the collections given, closest first; the query vector is asked
        for only when some past question shares enough terms."""
        await self.bank.refresh()
        indexes = self.bank.indexes(collections)
        plausible = [i for i in indexes if i.neighbours(terms, None, self.k, self.min_cosine, self.min_lexical)[1]]
        if not plausible:
            return []
        query_vector = await vector()
        found = [n for index in plausible
                 for n in index.neighbours(terms, query_vector, self.k, self.min_cosine, self.min_lexical)[0]]
        found.sort(key=lambda n: -n.cosine)
        return [Neighbour(n.case, n.cosine, n.lexical_query, n.lexical_case, i) for i, n in enumerate(found[: self.k])]

    async def select(self, terms: list[str], vector: Callable[[], Awaitable[np.ndarray]], ranking: Ranking,
                     filters: SearchFilters, visibility: Visibility, strategy: str) -> CaseSelection | None:
        """The ranking with the cases' passages moved (scores: the plain ranking's, by position), or None
        when no past question is close enough (the plain ranking stands, exactly)."""
        start = time.perf_counter()
        neighbours = await self.neighbours(terms, vector, visibility.collections)
        if not neighbours:
            metrics.CASE_LOOKUPS.labels(outcome="none").inc()
            return None
        judged = sorted({p.chunk_id for n in neighbours for p in n.case.passages if p.judgement != 0})
        access = await self.store.access(judged, filters, visibility)
        # A case is used only when the request may see every passage it judged that still exists.
        usable = [n for n in neighbours
                  if all(access[p.chunk_id][0] for p in n.case.passages if p.judgement != 0 and p.chunk_id in access)]
        usable = [Neighbour(n.case, n.cosine, n.lexical_query, n.lexical_case, i) for i, n in enumerate(usable)]
        index = {n.case.collection: self.bank.index(n.case.collection) for n in usable}
        found = [c for c in make_candidates(usable, ranking, {k: v for k, v in index.items() if v}, utcnow())
                 if c.chunk_id in access and access[c.chunk_id][1]]
        if not found:
            metrics.CASE_LOOKUPS.labels(outcome="none").inc()
            return None
        await self.selector.refresh()
        decision = self.selector.decide(ranking, found, strategy)
        changed = decision.order != ranking.order
        scores = ranking.scores
        ranked = [(cid, scores[i] if i < len(scores) else (scores[-1] if scores else 0.0))
                  for i, cid in enumerate(decision.order)]
        metrics.CASE_LOOKUPS.labels(outcome="changed" if changed else "unchanged").inc()
        return CaseSelection(ranked=ranked, hits=decision.hits, dropped=decision.dropped,
                             case_ids=sorted({n.case.id for n in usable}), selector_version=self.selector.version,
                             rule=decision.rule, candidates=log_rows(found, decision, ranking), changed=changed,
                             elapsed_ms=round((time.perf_counter() - start) * 1000, 3))

    def record(self, query: CaseQuery, text: str, strategy: str, visibility: Visibility, hits: list[Hit],
               selection: CaseSelection | None, latency_ms: float) -> None:
        """Log a request served with case memory on: feedback for it makes a case."""
        served = [h.chunk_id for h in hits]
        metrics.CASE_HITS.inc(sum(1 for cid in served if selection is not None and cid in selection.hits))
        self._log.append({
            "request_id": query.request_id, "created_at": utcnow(), "endpoint": query.endpoint,
            "key_id": visibility.key_id,
            "collections": sorted(visibility.collections) if visibility.collections is not None else ["*"],
            "query": text, "strategy": strategy,
            "selector_version": selection.selector_version if selection else None,
            "served_chunk_ids": served, "candidates": selection.candidates if selection else [],
            "changed": bool(selection and selection.changed), "latency_ms": round(latency_ms, 3),
        })

    async def flush(self) -> None:
        await self._log.flush()

    def start(self) -> None:
        self._log.start()

    async def stop(self) -> None:
        await self._log.stop()

