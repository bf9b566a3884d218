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

That decision is deterministic, so on its own the decision log could only say what the selector did, never
what another would have earned. So, with a model, each passage's decision is with probability ε =
CASES_EXPLORATION replaced by a draw that admits it with the selector's probability p: a passage it held
back (a close case judged it relevant, but p less the margin is not above its place's) is then admitted
and moves up one place (just above the passage before it), and one it admitted may stay where it was. The
propensity (1 - ε)·[the selector admits] + ε·p is logged with the decision, so both choices have support
wherever 0 < p < 1 and off-policy evaluation can weigh another selector's (`dtrag cases ope`). The top
passage has nowhere to move and the rule never explores (it decides before there is any evidence); with
no close case nothing is drawn: the ranking stays exactly the plain one.

Every worker reads the newest version from the database (checked at most every CASES_REFRESH_S).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from apps.search.cases.features import BASE_FEATURES, FEATURES, Candidate, base_features
from apps.search.cases.model import Logistic, SelectorParameters
from apps.search.cases.store import CaseStore
from apps.search.cases.types import CaseHit, Ranking


@dataclass(frozen=True)
class Thresholds:
    duplicate_cosine: float
    duplicate_lexical: float
    margin: float = 0.0  # the selector's probability must beat a position's by this much (model only)

    def duplicate(self, cosine: float, lexical_query: float, lexical_case: float) -> bool:
        """A near-duplicate past question: what the rule trusts."""
        return (cosine >= self.duplicate_cosine and lexical_query >= self.duplicate_lexical
                and lexical_case >= self.duplicate_lexical)

    def admits(self, p: float, here: float, rule: bool) -> bool:
        """A passage moves up when its probability (less the margin, for a model) beats its place's `here`."""
        return p - (0.0 if rule else self.margin) > here


def fitted(parameters: SelectorParameters, collection: str, strategy: str) -> tuple[Logistic, Logistic] | None:
    """The collection's selector and the plain ranking's position model for the strategy; None: the rule
    decides (no model fitted on these features for the collection yet)."""
    model = parameters.model_for(collection, FEATURES, BASE_FEATURES)
    base = model.base_for(strategy) if model is not None else None
    return (model.selector, base) if model is not None and model.selector is not None and base is not None else None


@dataclass
class Decision:
    order: list[int]  # the new ranking, best first
    hits: dict[int, CaseHit]  # chunks moved up (or in): admitted
    dropped: list[int]
    probabilities: list[float]  # per candidate
    rule: bool
    # Per passage a close case judged relevant (the selector's decisions): the plain ranking's probability at
    # its place (0: not in it), and the chance it was admitted (the logged propensity).
    base: dict[int, float] = field(default_factory=dict)
    propensities: dict[int, float] = field(default_factory=dict)


class Selector:
    def __init__(self, store: CaseStore, thresholds: Thresholds, refresh_s: float, exploration: float = 0.0,
                 rng: np.random.Generator | None = None) -> None:
        self.store = store
        self.thresholds = thresholds
        self.refresh_s = refresh_s
        self.exploration = exploration
        self.rng = rng if rng is not None else np.random.default_rng()
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

    def duplicate(self, c: Candidate) -> bool:
        return self.thresholds.duplicate(c.cosine, c.lexical_query, c.lexical_case)

    def decide(self, ranking: Ranking, candidates: list[Candidate], strategy: str) -> Decision:
        n = len(ranking.order)
        # The collection of the closest case speaks for the query (a search over several collections
        # is ranked by the model of the one its nearest past question comes from).
        collection = max(candidates, key=lambda c: c.cosine).collection
        models = fitted(self.parameters, collection, strategy)
        rule = models is None
        if models is not None:
            selector, base = models
            probabilities = selector.probability(np.stack([c.features for c in candidates]))
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
        margin, explore = (0.0, 0.0) if rule else (self.thresholds.margin, self.exploration)
        at_place: dict[int, float] = {}
        propensities: dict[int, float] = {}
        for cid, (p, cases, _) in best.items():
            place = position.get(cid, n)  # n: not in the plain ranking, after its last passage
            here = at_place[cid] = probability.get(cid, 0.0)
            greedy = self.thresholds.admits(p, here, rule)
            explores = explore > 0 and place > 0
            propensities[cid] = (1 - explore) * greedy + explore * p if explores else float(greedy)
            admit = greedy
            if explores and self.rng.random() < explore:  # this decision is a draw
                admit = bool(self.rng.random() < p)
            if not admit:
                continue
            # A held-back passage explored in: just above the passage before it (and those tied with it).
            probability[cid] = p - margin if greedy else float(prior[place - 1]) + 1e-9
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
        return Decision(order, hits, dropped, [round(float(p), 6) for p in probabilities], rule, at_place, propensities)
