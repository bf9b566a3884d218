"""Off-policy evaluation of the case selector from its decision log: what would another selector have earned?

A logged decision is one passage a close past question judged relevant, in a request served with case
memory on whose feedback arrived: the selector admitted it (the cases moved it up) or held it back, with
the logged propensity μ(admit) (apps/search/cases/selector.py: (1 - ε)·[the selector admits] + ε·p with
ε = CASES_EXPLORATION; 0 or 1 at the top and under the rule, which do not explore). The reward is
what the cases added: +1 for an admitted passage the feedback marked relevant, -1 for one marked
irrelevant, 0 otherwise (unmarked; or held back, when the plain ranking stands whatever its marks). A
target selector admits a passage as the selector does (Thresholds.admits) with its own probability and
margin, against the plain ranking's probability at the passage's place as logged. The estimators are the
bandit's (bandit/ope.py: IPS and SNIPS with bootstrap intervals, the effective sample size); with no reward
model DR would equal IPS, so it is left out. `unsupported` counts decisions where the target admits what
the logging selector never could (μ = 0): their rewards are missing from the estimate.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import datetime
from typing import Any

import numpy as np

from apps.orchestration.src.bandit.ope import Logged, evaluate
from apps.search.cases.features import FEATURES
from apps.search.cases.model import SelectorParameters
from apps.search.cases.selector import Thresholds, fitted
from apps.search.cases.store import CaseStore, feedback_ref

ADMIT, SKIP = "admit", "skip"
TARGETS = ("current", "rule")
_COSINE, _LEXICAL_QUERY, _LEXICAL_CASE = (FEATURES.index(f) for f in ("cosine", "lexical_query", "lexical_case"))


async def target_parameters(store: CaseStore, target: str = "current", version: int | None = None
                            ) -> SelectorParameters:
    """The selector to evaluate: a stored version (`version`, or the newest for "current"), or the fixed rule
    everywhere ("rule")."""
    if target not in TARGETS:
        raise ValueError(f"target must be one of {TARGETS}, got {target!r}")
    if target == "rule":
        return SelectorParameters()
    number = version if version is not None else await store.latest_version()
    data = await store.selector(number)
    if data is None:
        if version is not None:
            raise LookupError(f"no selector version {version}")
        return SelectorParameters()
    return SelectorParameters.from_json(number, data)


def _target_admits(parameters: SelectorParameters, thresholds: Thresholds, strategy: str, collection: str,
                   rows: list[dict[str, Any]], here: float) -> bool:
    """Whether the target admits a passage: its rows are the logged candidates (one per close case judging
    it relevant), `collection` the request's (its closest case's), as Selector.decide reads them."""
    models = fitted(parameters, collection, strategy)
    if models is None:
        p = max(float(thresholds.duplicate(r["features"][_COSINE], r["features"][_LEXICAL_QUERY],
                                           r["features"][_LEXICAL_CASE])) for r in rows)
    else:
        p = float(np.max(models[0].probability(np.asarray([r["features"] for r in rows], dtype=np.float64))))
    return thresholds.admits(p, here, models is None)


def logged_decisions(rows: list[Any], marks: dict[str, dict[int, float]], parameters: SelectorParameters,
                     thresholds: Thresholds, collection: str | None = None
                     ) -> tuple[list[Logged], dict[str, float], dict[str, int]]:
    """The logged decisions of these requests (with the target's π(admit) per decision, keyed by state) and
    counts of what was found."""
    logged: list[Logged] = []
    target: dict[str, float] = {}
    counts = {"requests": 0, "without_propensity": 0}
    for row in rows:
        candidates = [c for c in row.candidates or () if len(c.get("features") or ()) == len(FEATURES)]
        if not candidates:
            continue
        counts["requests"] += 1
        closest = max(candidates, key=lambda c: c["features"][_COSINE])["collection"]  # as Selector.decide
        judged = marks.get(feedback_ref(row.key_id, row.request_id), {})
        by_chunk: dict[int, list[dict[str, Any]]] = {}
        for c in candidates:
            if c.get("judgement", 0) > 0 and (collection is None or c["collection"] == collection):
                by_chunk.setdefault(int(c["chunk_id"]), []).append(c)
        for chunk_id, found in sorted(by_chunk.items()):
            first = found[0]
            if first.get("mu") is None:  # logged before propensities were
                counts["without_propensity"] += 1
                continue
            mu, admitted = float(first["mu"]), bool(first["admitted"])
            state = f"{row.request_id}:{chunk_id}"
            logged.append(Logged(state, ADMIT if admitted else SKIP, judged.get(chunk_id, 0.0) if admitted else 0.0,
                                 {ADMIT: mu, SKIP: 1.0 - mu}))
            target[state] = float(_target_admits(parameters, thresholds, row.strategy, closest, found,
                                                 float(first["base"])))
    return logged, target, counts


async def evaluate_selector(store: CaseStore, parameters: SelectorParameters, thresholds: Thresholds, *,
                            margin: float | None = None, collection: str | None = None,
                            since: datetime | None = None, limit: int = 5000, bootstrap: int = 1000
                            ) -> dict[str, Any]:
    """The value per logged decision of the selector `parameters` (with `margin`, default the configured one)
    on the rewarded requests since `since` (the newest `limit`), against what the logging selector earned
    (`logged_mean_reward`): `dtrag cases ope`."""
    if margin is not None:
        thresholds = replace(thresholds, margin=margin)
    rows = await store.rewarded_decisions(limit, since)
    marks = await store.judgements_of([feedback_ref(r.key_id, r.request_id) for r in rows])
    logged, target, counts = logged_decisions(rows, marks, parameters, thresholds, collection)
    # The bootstrap resamples every decision: CPU, off the event loop.
    estimate = await asyncio.to_thread(
        evaluate, logged, lambda s: {ADMIT: target[s], SKIP: 1.0 - target[s]}, None, bootstrap)
    estimate.pop("dr", None)
    return {
        "version": parameters.version, "margin": thresholds.margin, "collection": collection, **counts,
        "explored": sum(1 for item in logged if 0.0 < item.probabilities[ADMIT] < 1.0),
        "admitted": sum(1 for item in logged if item.action == ADMIT),
        "target_admits": sum(1 for item in logged if target[item.state] > 0),
        "agreement": round(float(np.mean([(target[i.state] > 0) == (i.action == ADMIT) for i in logged])), 4)
        if logged else None,
        "unsupported": sum(1 for i in logged if target[i.state] > 0 and i.probabilities[ADMIT] <= 0.0),
        **estimate,
    }
