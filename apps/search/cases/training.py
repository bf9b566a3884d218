"""The selector's batch update: examples from the bank's own history and from the logged decisions, one fit
per collection, one new version in the database for every worker.

Each past question plays the query once: its close neighbours among the other cases of its collection
propose their judged passages, its own judgements label them (the passages it judged relevant are the
positives), and its plain ranking (searched again now, with the strategy it was served with) supplies
the ranking features and the examples of how likely each position is relevant. Requests served with case
memory on whose feedback arrived add the candidates as they were scored then, labelled by that feedback.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from apps.core.models import utcnow
from apps.search.cases.bank import CaseBank, CollectionIndex
from apps.search.cases.features import BASE_FEATURES, FEATURES, base_features, candidates
from apps.search.cases.model import CollectionModel, Logistic, SelectorParameters
from apps.search.cases.store import CaseStore, feedback_ref
from apps.search.cases.types import Neighbour, Ranking

log = logging.getLogger(__name__)

# (query, strategy or None for the default, collection) → the plain ranking, as a search would rank it.
Ranker = Callable[[str, str | None, str], Awaitable[tuple[Ranking, str]]]


@dataclass(frozen=True)
class TrainingLimits:
    neighbours: int
    min_cosine: float
    min_lexical: float
    max_cases: int  # per collection, the newest
    min_examples: int  # candidate rows before a collection gets its own selector
    min_positives: int = 5  # and of each label
    min_base_queries: int = 20  # questions before a ranking curve is fitted for a strategy
    logged_decisions: int = 5000


def _enough(y: np.ndarray, limits: TrainingLimits, rows: int) -> bool:
    return len(y) >= rows and limits.min_positives <= int(y.sum()) <= len(y) - limits.min_positives


Examples = tuple[list[np.ndarray], list[float]]


async def _collection_examples(index: CollectionIndex, bank: CaseBank, rank: Ranker, limits: TrainingLimits,
                               ) -> tuple[list[np.ndarray], list[float], dict[str, Examples]]:
    rows: list[np.ndarray] = []
    labels: list[float] = []
    base: dict[str, Examples] = {}
    positions = {case.id: i for i, case in enumerate(index.cases)}
    judged = [c for c in index.cases if c.relevant]
    now = utcnow()
    for case in sorted(judged, key=lambda c: c.updated_at, reverse=True)[: limits.max_cases]:
        ranking, strategy = await rank(case.query, case.strategy, index.name)
        x = base_features(ranking)
        y = [float(cid in case.relevant) for cid in ranking.order]
        for key in (strategy, "*"):
            bx, by = base.setdefault(key, ([], []))
            bx.append(x)
            by.extend(y)
        terms = await bank.terms(case.query)
        neighbours, _ = index.neighbours(terms, case.vector, limits.neighbours, limits.min_cosine,
                                         limits.min_lexical, exclude=positions[case.id])
        neighbours = [Neighbour(n.case, n.cosine, n.lexical_query, n.lexical_case, i) for i, n in enumerate(neighbours)]
        for c in candidates(neighbours, ranking, {index.name: index}, now, own=case):
            if c.judgement > 0:
                rows.append(c.features)
                labels.append(float(c.chunk_id in case.relevant))
    return rows, labels, base


async def _logged_examples(store: CaseStore, limits: TrainingLimits) -> dict[str, Examples]:
    """Candidates of rewarded decisions (scored with these features), labelled by the feedback's case."""
    out: dict[str, Examples] = {}
    rows = await store.rewarded_decisions(limits.logged_decisions)
    marks = await store.judgements_of([feedback_ref(row.key_id, row.request_id) for row in rows])
    for row in rows:
        judgements = marks.get(feedback_ref(row.key_id, row.request_id), {})
        if not any(v > 0 for v in judgements.values()):
            continue
        for c in row.candidates or ():
            if c.get("judgement", 0) <= 0 or len(c.get("features", ())) != len(FEATURES):
                continue
            x, y = out.setdefault(c["collection"], ([], []))
            x.append(np.asarray(c["features"], dtype=np.float64))
            y.append(float(judgements.get(c["chunk_id"], 0) > 0))
    return out


async def batch_update(store: CaseStore, bank: CaseBank, rank: Ranker, limits: TrainingLimits,
                       based_on: int) -> tuple[int | None, dict[str, Any]]:
    """Fit every collection's model and store them as the version after `based_on`; returns (the new
    version or None when another worker stored one first, a report)."""
    start = time.perf_counter()
    await bank.refresh()
    logged = await _logged_examples(store, limits)
    models: dict[str, CollectionModel] = {}
    report: dict[str, Any] = {"collections": {}}
    total = 0
    for index in bank.indexes(None):
        rows, labels, base_rows = await _collection_examples(index, bank, rank, limits)
        extra_x, extra_y = logged.get(index.name, ([], []))
        x = np.array(rows + extra_x, dtype=np.float64).reshape(-1, len(FEATURES))
        y = np.array(labels + extra_y, dtype=np.float64)
        selector = Logistic.fit(x, y) if _enough(y, limits, limits.min_examples) else None
        bases = {}
        for strategy, (bx, by) in base_rows.items():
            yy = np.array(by, dtype=np.float64)
            if len(bx) >= limits.min_base_queries and _enough(yy, limits, 0):
                bases[strategy] = Logistic.fit(np.vstack(bx), yy)
        total += len(y)
        report["collections"][index.name] = {
            "cases": len(index.cases), "examples": len(y), "logged_examples": len(extra_y),
            "positives": int(y.sum()), "selector": "learned" if selector and bases else "rule",
            "base_strategies": sorted(bases)}
        if selector is not None or bases:
            models[index.name] = CollectionModel(selector, bases, len(y))
    parameters = SelectorParameters(based_on + 1, FEATURES, BASE_FEATURES, models)
    report["seconds"] = round(time.perf_counter() - start, 3)
    version = await store.save_selector(based_on, parameters.to_json(), total, report)
    report["version"] = version
    log.info("case selector batch update", extra={"version": version, "examples": total})
    return version, report
