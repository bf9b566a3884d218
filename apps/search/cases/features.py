"""What the selector sees of a (query, case, passage) triple, and of the plain ranking's passages.

The same functions serve a search (the query against the bank) and the batch update (each past question
against the others, its own judgements as the labels), so the model is fitted on exactly what it scores.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

import numpy as np

from apps.search.cases.bank import CollectionIndex
from apps.search.cases.types import BankCase, Neighbour, Ranking

FEATURES = (
    "cosine",            # query–case cosine of the query vectors
    "lexical_query",     # IDF-weighted share of the query's terms the case's question has
    "lexical_case",      # and of the case's terms the query has
    "lexical_min",
    "neighbour",         # log(1 + place among the close cases)
    "cosine_gap",        # cosine less the closest case's
    "reward",            # the case's reward (rating, helpful, or from its marks)
    "age_days",          # log(1 + the case's age in whole days)
    "share",             # 1 / how many passages the case judged relevant
    "times_relevant",    # log(1 + other cases of the collection that judged the passage relevant)
    "times_irrelevant",  # log(1 + other cases that judged it irrelevant)
    "support",           # how many of the close cases judged it relevant
    "rank",              # 1 / its rank in the plain ranking (0: not in it)
    "score",             # its min-max normalised score there
    "absent",            # 1: not in the plain ranking at all
    "bm25",              # 1 / its rank in the BM25 leg (0: not there, or no such leg)
    "dense",             # 1 / its rank in the dense leg
    "case_rank",         # 1 / where the case's own request showed it (0: not shown)
    "same_top",          # the case's own top passage is the query's top, and this one is another
    "rival",             # cosine less that of the closest case judging the query's top relevant
    "rival_lexical",     # the same for lexical_query
    "is_top",            # it already is the query's top passage
)
BASE_FEATURES = ("reciprocal_rank", "log_rank", "score", "gap_to_next", "bm25", "dense")


@dataclass(frozen=True)
class Candidate:
    """A passage a close case judged: its features for the selector."""

    chunk_id: int
    case_id: int
    collection: str
    judgement: float
    cosine: float
    lexical_query: float
    lexical_case: float
    features: np.ndarray


def base_features(ranking: Ranking) -> np.ndarray:
    """Per position of the plain ranking: what says how likely its passage is relevant."""
    n = len(ranking.order)
    if not n:
        return np.zeros((0, len(BASE_FEATURES)))
    norm = np.asarray(ranking.normalised())
    ranks = np.arange(1, n + 1, dtype=np.float64)
    following = np.append(norm[1:], 0.0)
    # Where the passage stands in each leg: a top both legs put first is surer than one they dispute.
    bm25, dense = ([1.0 / ranking.legs.get(leg, {}).get(cid, math.inf) for cid in ranking.order]
                   for leg in ("bm25", "dense"))
    return np.stack([1.0 / ranks, np.log(ranks), norm, norm - following, bm25, dense], axis=1)


def candidates(neighbours: list[Neighbour], ranking: Ranking, index: dict[str, CollectionIndex], now: datetime,
               own: BankCase | None = None) -> list[Candidate]:
    """One candidate per (close case, passage it judged). `own`: the past question playing the query in
    a batch update, whose own judgements must not count in the chunk statistics."""
    if not neighbours:
        return []
    norm = ranking.normalised()
    top = ranking.top
    best = neighbours[0].cosine
    rivals = [n for n in neighbours if top is not None and top in n.case.relevant]
    rival_cosine = max((n.cosine for n in rivals), default=0.0)
    rival_lexical = max((n.lexical_query for n in rivals), default=0.0)
    support: dict[int, int] = {}
    for n in neighbours:
        for chunk_id in n.case.relevant:
            support[chunk_id] = support.get(chunk_id, 0) + 1
    own_relevant = own.relevant if own is not None else frozenset()
    own_irrelevant = own.irrelevant if own is not None else frozenset()
    out = []
    for n in neighbours:
        case = n.case
        collection = index[case.collection]
        relevant = case.relevant
        shown = {p.chunk_id: p.shown_rank for p in case.passages}
        # Whole days: a model fitted minutes after an import must not read the import's order (seconds of
        # age) as a signal that then drifts while it serves.
        age = max((now - case.created_at).total_seconds(), 0.0) // 86400
        for passage in case.passages:
            if passage.judgement == 0:
                continue
            cid = passage.chunk_id
            rank = ranking.rank(cid)
            bm25, dense = ranking.legs.get("bm25", {}).get(cid), ranking.legs.get("dense", {}).get(cid)
            shown_rank = shown.get(cid)
            is_top = cid == top
            features = np.array([
                n.cosine, n.lexical_query, n.lexical_case, min(n.lexical_query, n.lexical_case),
                math.log1p(n.position), n.cosine - best, case.reward, math.log1p(age),
                1.0 / max(len(relevant), 1),
                math.log1p(max(collection.relevant_counts[cid] - (passage.judgement > 0)
                               - (cid in own_relevant), 0)),
                math.log1p(max(collection.irrelevant_counts[cid] - (passage.judgement < 0)
                               - (cid in own_irrelevant), 0)),
                support.get(cid, 0),
                1.0 / rank if rank else 0.0, norm[rank - 1] if rank else 0.0, 0.0 if rank else 1.0,
                1.0 / bm25 if bm25 else 0.0, 1.0 / dense if dense else 0.0,
                1.0 / shown_rank if shown_rank else 0.0,
                float(case.top_shown == top and top is not None and not is_top),
                0.0 if is_top else n.cosine - rival_cosine,
                0.0 if is_top else n.lexical_query - rival_lexical,
                float(is_top),
            ])
            out.append(Candidate(cid, case.id, case.collection, passage.judgement, n.cosine, n.lexical_query,
                                 n.lexical_case, features))
    return out
