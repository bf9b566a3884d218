"""Value types of case memory: a request asking for it, the cases in the bank, and what the selector chose."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from apps.search.types import Hit


@dataclass(frozen=True)
class CaseQuery:
    """A search served with case memory on (the `neural_case_selector` flag): logged under `request_id`, so
    feedback for it can make a case."""

    request_id: str
    endpoint: str  # search | answer


@dataclass(frozen=True)
class Passage:
    """A chunk of a case: +1 judged relevant, -1 judged not, 0 only shown; where the request showed it."""

    chunk_id: int
    judgement: float
    shown_rank: int | None


@dataclass
class BankCase:
    """A case as the bank holds it in memory."""

    id: int
    collection: str
    query: str
    strategy: str | None
    vector: np.ndarray
    reward: float
    created_at: datetime
    updated_at: datetime
    passages: tuple[Passage, ...] = ()
    terms: frozenset[str] = frozenset()

    @property
    def relevant(self) -> frozenset[int]:
        return frozenset(p.chunk_id for p in self.passages if p.judgement > 0)

    @property
    def irrelevant(self) -> frozenset[int]:
        return frozenset(p.chunk_id for p in self.passages if p.judgement < 0)

    @property
    def top_shown(self) -> int | None:
        shown = [p for p in self.passages if p.shown_rank is not None]
        return min(shown, key=lambda p: p.shown_rank or 0).chunk_id if shown else None


@dataclass(frozen=True)
class Neighbour:
    """A case close enough to a query: by query vector and by shared terms."""

    case: BankCase
    cosine: float
    lexical_query: float  # IDF-weighted share of the query's terms the case's question has
    lexical_case: float  # and of the case's terms the query has
    position: int  # 0: the nearest of the close cases


@dataclass(frozen=True)
class Ranking:
    """What the plain ranking (before cases) says of each chunk: the features that check a case against it."""

    order: list[int]  # chunk ids, best first
    scores: list[float]
    legs: dict[str, dict[int, int]] = field(default_factory=dict)  # leg → chunk id → 1-based rank

    def __post_init__(self) -> None:
        object.__setattr__(self, "positions", {cid: i for i, cid in enumerate(self.order)})

    @classmethod
    def of_hits(cls, hits: list[Hit]) -> Ranking:
        """The ranking a plain search's hits (at the case leg's depth) show, with each hit's leg ranks."""
        legs: dict[str, dict[int, int]] = {}
        for hit in hits:
            for leg, rank in hit.ranks.items():
                if rank is not None:
                    legs.setdefault(leg, {})[hit.chunk_id] = rank
        return cls([h.chunk_id for h in hits], [h.score for h in hits], legs)

    def rank(self, chunk_id: int) -> int | None:
        position = self.positions.get(chunk_id)  # type: ignore[attr-defined]
        return None if position is None else position + 1

    def normalised(self) -> list[float]:
        """Min-max normalised scores (the top 1, the bottom 0)."""
        if not self.scores:
            return []
        high, low = max(self.scores), min(self.scores)
        if high - low <= 1e-12:
            return [1.0] * len(self.scores)
        return [(s - low) / (high - low) for s in self.scores]

    @property
    def top(self) -> int | None:
        return self.order[0] if self.order else None


@dataclass
class CaseHit:
    """A chunk the cases moved up (or in): the selector's probability, the cases behind it."""

    chunk_id: int
    probability: float
    case_ids: list[int]
    rank: int = 0  # 1-based among the chunks the cases moved up


@dataclass
class CaseSelection:
    """The outcome of the case leg for one search. `changed` False: the ranking is exactly the plain one."""

    ranked: list[tuple[int, float]]
    hits: dict[int, CaseHit]
    dropped: list[int]  # chunks a near-duplicate past question marked irrelevant, moved to the end
    case_ids: list[int]  # the close cases considered
    selector_version: int
    rule: bool  # True: the fixed rule decided (no model fitted for the collection yet)
    candidates: list[dict[str, Any]]  # what the decision log keeps
    changed: bool
    elapsed_ms: float = 0.0
