"""The selector: which passages of the close past questions move up the ranking, and which drop.

Ordering by the probability of relevance is what maximises the expected DCG, so each position of the plain
ranking gets the probability the collection's history gives a passage there (a fitted curve, made
non-increasing down the ranking so the plain order among its own passages never changes), and a passage a
close case judged relevant gets the selector's probability less CASES_MARGIN when that is higher: it moves
up to the first position whose passage is less likely relevant than that. The margin allows for a model
fitted on a few hundred outcomes being overconfident: 0.05 is the largest of 0, 0.05, 0.1, 0.2, 0.3 that
cost SciFact train's held-out half under 0.001 nDCG@10 (0.0002), and it stops most moves on korquad-ko.
Before a collection has a model (too few outcomes), a fixed rule stands in: only a near-duplicate past
question (cosine and both lexical shares over CASES_DUPLICATE_*) moves its relevant passages to the top.
A passage a near-duplicate question judged irrelevant (and no case at least as close judged relevant)
drops to the end, under either.

Every worker reads the newest version from the database (checked at most every CASES_REFRESH_S).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from apps.search.cases.features import BASE_FEATURES, FEATURES, Candidate, base_features
from apps.search.cases.model import CollectionModel, SelectorParameters
from apps.search.cases.store import CaseStore
from apps.search.cases.types import CaseHit, Ranking


@dataclass(frozen=True)
class Thresholds:
    duplicate_cosine: float
    duplicate_lexical: float
    margin: float = 0.0  # the selector's probability must beat a position's by this much (model only)


@dataclass
class Decision:
    order: list[int]  # the new ranking, best first
    hits: dict[int, CaseHit]  # chunks moved up (or in)
    dropped: list[int]
    probabilities: list[float]  # per candidate
    rule: bool


class Selector:
    def __init__(self, store: CaseStore, thresholds: Thresholds, refresh_s: float) -> None:
        self.store = store
        self.thresholds = thresholds
        self.refresh_s = refresh_s
        self.parameters = SelectorParameters()
        self._checked = -math.inf

    @property
    def version(self) -> int:
        return self.parameters.version

    async def refresh(self, force: bool = False) -> None:
        if not force and time.monotonic() - self._checked < self.refresh_s:
            return
        latest = await self.store.latest_version()
        if latest != self.parameters.version:
            data = await self.store.selector(latest)
            self.parameters = SelectorParameters.from_json(latest, data) if data is not None else SelectorParameters()
        self._checked = time.monotonic()

    def model(self, collection: str) -> CollectionModel | None:
        return self.parameters.model_for(collection, FEATURES, BASE_FEATURES)

    def duplicate(self, c: Candidate) -> bool:
        t = self.thresholds
        return (c.cosine >= t.duplicate_cosine and c.lexical_query >= t.duplicate_lexical
                and c.lexical_case >= t.duplicate_lexical)

    def decide(self, ranking: Ranking, candidates: list[Candidate], strategy: str) -> Decision:
        n = len(ranking.order)
        # The collection of the closest case speaks for the query (a search over several collections
        # is ranked by the model of the one its nearest past question comes from).
        collection = max(candidates, key=lambda c: c.cosine).collection
        model = self.model(collection)
        base = model.base_for(strategy) if model is not None else None
        rule = model is None or model.selector is None or base is None
        probabilities = np.zeros(len(candidates))
        if not rule:
            assert model is not None and model.selector is not None and base is not None
            probabilities = model.selector.probability(np.stack([c.features for c in candidates]))
            prior = np.minimum.accumulate(base.probability(base_features(ranking))) if n else np.zeros(0)
        else:
            probabilities = np.array([1.0 if c.judgement > 0 and self.duplicate(c) else 0.0 for c in candidates])
            # Any non-increasing prior below 1: only a near-duplicate's passages (probability 1) move.
            prior = np.linspace(0.5, 0.0, n, endpoint=False) if n else np.zeros(0)
        probability = {cid: float(prior[i]) for i, cid in enumerate(ranking.order)}
        position = {cid: i for i, cid in enumerate(ranking.order)}
        best: dict[int, tuple[float, list[int], float]] = {}  # chunk → (probability, cases, closest cosine)
        for c, p in zip(candidates, probabilities, strict=True):
            if c.judgement <= 0:
                continue
            p_best, cases, cosine = best.get(c.chunk_id, (0.0, [], 0.0))
            best[c.chunk_id] = (max(p_best, float(p)), [*cases, c.case_id], max(cosine, c.cosine))
        hits: dict[int, CaseHit] = {}
        margin = 0.0 if rule else self.thresholds.margin
        for cid, (p, cases, _) in best.items():
            if p - margin > probability.get(cid, 0.0):
                probability[cid] = p - margin
                position.setdefault(cid, n + len(hits))
                hits[cid] = CaseHit(cid, round(p, 6), sorted(set(cases)))
        # A near-duplicate question's "irrelevant", unless a case at least as close said relevant.
        dropped = sorted({c.chunk_id for c in candidates
                          if c.judgement < 0 and self.duplicate(c) and c.chunk_id in position
                          and c.chunk_id not in hits and best.get(c.chunk_id, (0, [], 0.0))[2] < c.cosine})
        kept = [cid for cid in probability if cid not in dropped]
        order = sorted(kept, key=lambda cid: (-probability[cid], position[cid])) + dropped
        for rank, hit in enumerate(sorted(hits.values(), key=lambda h: (-h.probability, position[h.chunk_id])), 1):
            hit.rank = rank
        return Decision(order, hits, dropped, [round(float(p), 6) for p in probabilities], rule)
