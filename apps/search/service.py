"""Hybrid search: run a strategy's legs concurrently, each under a timeout, fuse, hydrate.

If one leg fails or times out the other's results are returned and the result is marked degraded;
only when every leg fails does the search fail (`SearchUnavailable`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable
from dataclasses import replace

from apps.core.config import Settings
from apps.search.cache import SearchCache
from apps.search.embeddings.base import EmbeddingProvider
from apps.search.stores.base import Store
from apps.search.strategies import BM25, DENSE, Strategy, build_strategies
from apps.search.types import Hit, LegHit, SearchFilters, SearchResult
from apps.text.analyzer import Analyzer

log = logging.getLogger(__name__)


class UnknownStrategyError(ValueError):
    pass


class SearchUnavailableError(RuntimeError):
    pass


class SearchService:
    def __init__(self, store: Store, embedder: EmbeddingProvider, analyzer: Analyzer, settings: Settings,
                 cache: SearchCache | None = None) -> None:
        self.store = store
        self.cache = cache
        self.embedder = embedder
        self.analyzer = analyzer
        self.settings = settings
        self.strategies = build_strategies(settings)
        if settings.default_strategy not in self.strategies:
            raise UnknownStrategyError(
                f"DEFAULT_STRATEGY {settings.default_strategy!r} is not one of {sorted(self.strategies)}"
            )

    async def clear_cache(self) -> None:
        if self.cache is not None:
            await self.cache.clear()

    def resolve(self, name: str | None) -> Strategy:
        name = name or self.settings.default_strategy
        try:
            return self.strategies[name]
        except KeyError:
            raise UnknownStrategyError(
                f"unknown strategy {name!r}; choose one of {', '.join(sorted(self.strategies))}"
            ) from None

    async def _bm25_leg(self, query: str, depth: int, filters: SearchFilters) -> list[LegHit]:
        terms = await self.analyzer.aquery_terms(query, self.settings.max_query_terms)
        return await self.store.bm25(terms, depth, filters)

    async def _dense_leg(self, query: str, depth: int, filters: SearchFilters) -> list[LegHit]:
        vector = await self.embedder.embed_query(query)
        return await self.store.dense(vector, self.embedder.name, depth, filters)

    async def _timed(self, leg: str, work: Awaitable[list[LegHit]], timings: dict[str, float]) -> list[LegHit]:
        start = time.perf_counter()
        try:
            return await asyncio.wait_for(work, timeout=self.settings.leg_timeout_ms / 1000)
        finally:
            timings[leg] = round((time.perf_counter() - start) * 1000, 3)

    def depth(self, top_k: int) -> int:
        return max(top_k, self.settings.search_candidates)

    async def first_look(self, query: str, top_k: int, filters: SearchFilters | None = None) -> list[LegHit]:
        """The BM25 leg alone: cheap (no query embedding), and `search(prefetched=...)` reuses it."""
        return await self._bm25_leg(query, self.depth(top_k), filters or SearchFilters())

    async def search(
        self,
        query: str,
        top_k: int = 5,
        filters: SearchFilters | None = None,
        strategy: str | None = None,
        prefetched: dict[str, list[LegHit]] | None = None,
        cacheable: bool = False,
    ) -> SearchResult:
        """`prefetched` holds legs already run for this query, filters and top_k (see `first_look`).
        `cacheable` results come from and go to the search cache (a bandit decision never does: it must
        be drawn and logged)."""
        chosen = self.resolve(strategy)
        filters = filters or SearchFilters()
        if not (cacheable and self.cache is not None and self.cache.enabled):
            return await self._search(query, top_k, filters, chosen, prefetched)
        key = await self.cache.key(q=query, top_k=top_k, filters=filters, strategy=chosen.name)
        cached = await self.cache.get(key)
        if cached is not None:
            return replace(cached, cached=True)
        result = await self._search(query, top_k, filters, chosen, prefetched)
        await self.cache.put(key, result)
        return result

    async def _search(self, query: str, top_k: int, filters: SearchFilters, chosen: Strategy,
                      prefetched: dict[str, list[LegHit]] | None) -> SearchResult:
        start = time.perf_counter()
        depth = self.depth(top_k)
        timings: dict[str, float] = {}
        runners = {BM25: self._bm25_leg, DENSE: self._dense_leg}
        legs: dict[str, list[LegHit]] = {leg: hits for leg, hits in (prefetched or {}).items() if leg in chosen.legs}
        to_run = [leg for leg in chosen.legs if leg not in legs]
        outcomes = await asyncio.gather(
            *(self._timed(leg, runners[leg](query, depth, filters), timings) for leg in to_run),
            return_exceptions=True,
        )
        reasons: list[str] = []
        for leg, outcome in zip(to_run, outcomes):
            if isinstance(outcome, BaseException):
                if not isinstance(outcome, Exception):
                    raise outcome
                why = "timed out" if isinstance(outcome, TimeoutError) else f"{type(outcome).__name__}: {outcome}"
                reasons.append(f"{leg} leg {why}")
                log.warning("search leg failed", extra={"leg": leg, "reason": why})
            else:
                legs[leg] = outcome
        if not legs:
            raise SearchUnavailableError("; ".join(reasons))

        fused = chosen.fuse(legs)
        ranked = sorted(fused.items(), key=lambda kv: (-kv[1], kv[0]))[:top_k]
        hits = await self._hydrate(ranked, legs)
        return SearchResult(
            hits=hits,
            strategy=chosen.name,
            latency_ms=round((time.perf_counter() - start) * 1000, 3),
            total_candidates=len(fused),
            degraded=bool(reasons),
            degraded_reasons=reasons,
            timings_ms=timings,
        )

    async def _hydrate(self, ranked: list[tuple[int, float]], legs: dict[str, list[LegHit]]) -> list[Hit]:
        if not ranked:
            return []
        positions = {
            leg: {h.chunk_id: (rank, h.score) for rank, h in enumerate(hits, start=1)} for leg, hits in legs.items()
        }
        rows = await self.store.hydrate([cid for cid, _ in ranked])
        hits = []
        for chunk_id, score in ranked:
            row = rows.get(chunk_id)
            if row is None:  # deleted between retrieval and hydration
                continue
            hits.append(
                Hit(
                    chunk_id=chunk_id,
                    doc_id=row.doc_id,
                    score=score,
                    text=row.text,
                    title=row.title,
                    source_url=row.source_url,
                    taxonomy_path=row.taxonomy_path,
                    external_id=row.external_id,
                    language=row.language,
                    ranks={leg: positions.get(leg, {}).get(chunk_id, (None, None))[0] for leg in (BM25, DENSE)},
                    scores={leg: positions.get(leg, {}).get(chunk_id, (None, None))[1] for leg in (BM25, DENSE)},
                )
            )
        return hits
