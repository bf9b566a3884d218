"""Named retrieval strategies: first-class objects a policy can choose among per query.

A strategy says which legs to run and how to fuse them. Arms are identified by name everywhere (logs,
Q-tables), so new ones can be added without touching stored state.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from apps.core.config import Settings
from apps.search import fusion
from apps.search.types import LegHit

BM25 = "bm25"
DENSE = "dense"

Fuser = Callable[[dict[str, list[LegHit]]], dict[int, float]]


RERANK_SUFFIX = "+rerank"


@dataclass(frozen=True)
class Strategy:
    name: str
    legs: tuple[str, ...]
    fuse: Fuser
    description: str
    rerank: bool = False  # the fused top RERANK_TOP_N go through the reranker before the top k are cut
    cost_usd: float = 0.0  # what one search with it costs beyond the machine (a hosted reranker's call)


def _single(leg: str) -> Fuser:
    return lambda legs: {h.chunk_id: h.score for h in legs.get(leg, [])}


def build_strategies(settings: Settings, rerank: bool = False) -> dict[str, Strategy]:
    """The fixed strategies and, with a reranker (`rerank`), each of them reranked: `hybrid_cc+rerank`."""
    w = settings.cc_dense_weight
    strategies = [
        Strategy(BM25, (BM25,), _single(BM25), "BM25 over analysed tokens, computed by the database"),
        Strategy(DENSE, (DENSE,), _single(DENSE), "cosine similarity of multilingual-e5-small vectors"),
        Strategy(
            "hybrid_rrf", (BM25, DENSE), lambda legs: fusion.rrf(legs, settings.rrf_k),
            f"reciprocal rank fusion of BM25 and dense (k={settings.rrf_k})",
        ),
        Strategy(
            "hybrid_cc", (BM25, DENSE), lambda legs: fusion.convex(legs, {BM25: 1 - w, DENSE: w}),
            f"convex combination of min-max normalised BM25 and dense scores (dense weight {w})",
        ),
    ]
    if rerank:
        strategies += [Strategy(s.name + RERANK_SUFFIX, s.legs, s.fuse,
                                f"{s.description}; its top {settings.rerank_top_n} reordered by the "
                                f"{settings.rerank_provider} reranker", rerank=True,
                                cost_usd=settings.rerank_cost_per_call_usd) for s in strategies]
    return {s.name: s for s in strategies}
