"""Rank fusion of the lexical and dense legs."""

from __future__ import annotations

from apps.search.types import LegHit


def rrf(legs: dict[str, list[LegHit]], k: int) -> dict[int, float]:
    """Reciprocal rank fusion: sum over legs of 1 / (k + rank), ranks starting at 1."""
    fused: dict[int, float] = {}
    for hits in legs.values():
        for rank, hit in enumerate(hits, start=1):
            fused[hit.chunk_id] = fused.get(hit.chunk_id, 0.0) + 1.0 / (k + rank)
    return fused


def min_max(hits: list[LegHit]) -> dict[int, float]:
    if not hits:
        return {}
    scores = [h.score for h in hits]
    low, high = min(scores), max(scores)
    if high - low <= 1e-12:
        return {h.chunk_id: 1.0 for h in hits}
    return {h.chunk_id: (h.score - low) / (high - low) for h in hits}


def convex(legs: dict[str, list[LegHit]], weights: dict[str, float]) -> dict[int, float]:
    """Convex combination of min-max normalised scores; a chunk missing from a leg scores 0 there."""
    fused: dict[int, float] = {}
    for leg, hits in legs.items():
        weight = weights.get(leg, 0.0)
        for chunk_id, score in min_max(hits).items():
            fused[chunk_id] = fused.get(chunk_id, 0.0) + weight * score
    return fused
