"""Hybrid search: run a strategy's legs concurrently, each under a timeout, fuse, hydrate.

If one leg fails or times out the other's results are returned and the result is marked degraded;
only when every leg fails does the search fail (`SearchUnavailable`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace

import numpy as np
from sqlalchemy.exc import SQLAlchemyError

from apps.core import metrics
from apps.core.config import Settings
from apps.core.visibility import Visibility, effective
from apps.search.cache import SearchCache
from apps.search.cases.leg import CaseLeg
from apps.search.cases.types import CaseQuery, CaseSelection, Ranking
from apps.search.embeddings.base import EmbeddingError, EmbeddingProvider
from apps.search.rerank import Reranker
from apps.search.stores.base import Store
from apps.search.strategies import BM25, DENSE, Strategy, build_strategies
from apps.search.types import Hit, LegHit, SearchFilters, SearchResult
from apps.text.analyzer import Analyzer

log = logging.getLogger(__name__)


class UnknownStrategyError(ValueError):
    pass


class SearchUnavailableError(RuntimeError):
    pass


def _what_failed(exc: Exception) -> str:
    """A leg's failure as the client may read it (in `degraded_reasons` or a 503): what failed, never
    the exception's text, which can quote SQL, replica URLs or hosts. The log keeps the details."""
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, EmbeddingError):
        return "failed: the embedding service did not answer usably"
    if isinstance(exc, (SQLAlchemyError, OSError)):
        return "failed: the database did not answer"
    return "failed: internal error"


class _QueryVector:
    """The query's vector, embedded once for the dense leg and the case leg, whichever asks first (a leg
    that times out does not cancel it for the other); `start` begins embedding without waiting."""

    def __init__(self, embedder: EmbeddingProvider, query: str) -> None:
        self._embedder = embedder
        self._query = query
        self._task: asyncio.Task[np.ndarray] | None = None

    def start(self) -> asyncio.Task[np.ndarray]:
        if self._task is None:
            self._task = asyncio.create_task(self._embedder.embed_query(self._query))
            # Retrieved here, so a failure nobody waits for (the case leg gave up) is not logged as lost.
            self._task.add_done_callback(lambda t: t.cancelled() or t.exception())
        return self._task

    async def __call__(self) -> np.ndarray:
        return await asyncio.shield(self.start())


class SearchService:
    def __init__(self, store: Store, embedder: EmbeddingProvider, analyzer: Analyzer, settings: Settings,
                 cache: SearchCache | None = None, reranker: Reranker | None = None,
                 cases: CaseLeg | None = None) -> None:
        self.store = store
        self.cache = cache
        self.cases = cases
        self.embedder = embedder
        self.analyzer = analyzer
        self.settings = settings
        self.reranker = reranker
        self.strategies = build_strategies(settings, rerank=reranker is not None)
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

    async def _bm25_leg(self, query: str, depth: int, filters: SearchFilters, visibility: Visibility) -> list[LegHit]:
        terms = await self.analyzer.aquery_terms(query, self.settings.max_query_terms)
        return await self.store.bm25(terms, depth, filters, visibility)

    async def _dense_leg(self, vector: Callable[[], Awaitable[np.ndarray]], depth: int, filters: SearchFilters,
                         visibility: Visibility) -> list[LegHit]:
        return await self.store.dense(await vector(), self.embedder.name, depth, filters, visibility)

    def _query_vector(self, query: str) -> _QueryVector:
        return _QueryVector(self.embedder, query)

    async def _timed(self, leg: str, work: Awaitable[list[LegHit]], timings: dict[str, float]) -> list[LegHit]:
        start = time.perf_counter()
        try:
            return await asyncio.wait_for(work, timeout=self.settings.leg_timeout_ms / 1000)
        finally:
            timings[leg] = round((time.perf_counter() - start) * 1000, 3)

    def check_filters(self, filters: SearchFilters) -> None:
        """FilterLimitError for filters over SEARCH_MAX_METADATA_FILTERS or SEARCH_MAX_FILTER_VALUE_CHARS."""
        filters.check(self.settings.search_max_metadata_filters, self.settings.search_max_filter_value_chars)

    def depth(self, top_k: int) -> int:
        return max(top_k, self.settings.search_candidates)

    async def first_look(self, query: str, top_k: int, filters: SearchFilters | None = None) -> list[LegHit]:
        """The BM25 leg alone: cheap (no query embedding), and `search(prefetched=...)` reuses it."""
        filters = filters or SearchFilters()
        self.check_filters(filters)
        return await self._bm25_leg(query, self.depth(top_k), filters, effective(filters.visibility))

    async def search(
        self,
        query: str,
        top_k: int = 5,
        filters: SearchFilters | None = None,
        strategy: str | None = None,
        prefetched: dict[str, list[LegHit]] | None = None,
        cacheable: bool = False,
        cases: CaseQuery | None = None,
    ) -> SearchResult:
        """`prefetched` holds legs already run for this query, filters and top_k (see `first_look`).
        `cacheable` results come from and go to the search cache (a bandit decision never does: it must
        be drawn and logged). Only what `filters.visibility` (within the request's) allows is searched,
        and a cached result is shared only by searches that see the same. `cases`: case memory is on for
        this request (the `neural_case_selector` flag): past questions close to it may move passages, and
        the request is logged for its feedback; never from the cache, whose results the bank outdates."""
        chosen = self.resolve(strategy)
        filters = filters or SearchFilters()
        self.check_filters(filters)
        visibility = effective(filters.visibility)
        if cases is not None and self.cases is not None:
            return await self._search(query, top_k, filters, visibility, chosen, prefetched, cases)
        if not (cacheable and self.cache is not None and self.cache.enabled):
            return await self._search(query, top_k, filters, visibility, chosen, prefetched)
        key = await self.cache.key(q=query, top_k=top_k, filters=replace(filters, visibility=None),
                                   visibility=visibility.digest(), strategy=chosen.name)
        cached = await self.cache.get(key)
        if cached is not None:
            return replace(cached, cached=True)
        result = await self._search(query, top_k, filters, visibility, chosen, prefetched)
        await self.cache.put(key, result)
        return result

    async def _search(self, query: str, top_k: int, filters: SearchFilters, visibility: Visibility, chosen: Strategy,
                      prefetched: dict[str, list[LegHit]] | None, cases: CaseQuery | None = None) -> SearchResult:
        start = time.perf_counter()
        depth = self.depth(top_k)
        timings: dict[str, float] = {}
        vector = self._query_vector(query)
        runners = {BM25: lambda: self._bm25_leg(query, depth, filters, visibility),
                   DENSE: lambda: self._dense_leg(vector, depth, filters, visibility)}
        legs: dict[str, list[LegHit]] = {leg: hits for leg, hits in (prefetched or {}).items() if leg in chosen.legs}
        to_run = [leg for leg in chosen.legs if leg not in legs]
        if cases is not None and DENSE not in to_run:
            await self._embed_early(query, visibility, vector)
        outcomes = await asyncio.gather(
            *(self._timed(leg, runners[leg](), timings) for leg in to_run),
            return_exceptions=True,
        )
        reasons: list[str] = []
        for leg, outcome in zip(to_run, outcomes):
            if isinstance(outcome, BaseException):
                if not isinstance(outcome, Exception):
                    raise outcome
                reasons.append(f"{leg} leg {_what_failed(outcome)}")
                log.warning("search leg failed", extra={"leg": leg, "reason": f"{type(outcome).__name__}: {outcome}"})
            else:
                legs[leg] = outcome
        if not legs:
            raise SearchUnavailableError("; ".join(reasons))

        fused = chosen.fuse(legs)
        ranked = sorted(fused.items(), key=lambda kv: (-kv[1], kv[0]))
        selection = None
        if cases is not None and self.cases is not None:
            selection = await self._with_cases(query, ranked[:depth], legs, filters, visibility, chosen.name, vector,
                                               timings, reasons)
            if selection is not None and selection.changed:
                ranked = selection.ranked + ranked[depth:]
        rerank = chosen.rerank and self.reranker is not None
        hits = await self._hydrate(ranked[: max(top_k, self.settings.rerank_top_n) if rerank else top_k], legs,
                                   visibility)
        if rerank:  # the top N in the reranker's order, any deeper hits after them in fused order
            n = self.settings.rerank_top_n
            hits = (await self._reranked(query, hits[:n], timings, reasons) + hits[n:])[:top_k]
        latency_ms = round((time.perf_counter() - start) * 1000, 3)
        if cases is not None and self.cases is not None:
            self._mark_cases(hits, selection)
            self.cases.record(cases, query, chosen.name, visibility, hits, selection, latency_ms)
        return SearchResult(
            hits=hits,
            strategy=chosen.name,
            latency_ms=latency_ms,
            total_candidates=len(fused),
            degraded=bool(reasons),
            degraded_reasons=reasons,
            timings_ms=timings,
            cases=None if cases is None or self.cases is None else {
                "selector_version": selection.selector_version if selection else None,
                "rule": selection.rule if selection else None,
                "case_ids": selection.case_ids if selection else [],
                "changed": bool(selection and selection.changed)},
        )

    async def _embed_early(self, query: str, visibility: Visibility, vector: _QueryVector) -> None:
        """With no dense leg to embed the query, start embedding it beside the legs when the case leg will
        want it (some past question shares enough of its terms); a failure here is the case leg's to report."""
        assert self.cases is not None
        try:
            terms = await self.analyzer.aquery_terms(query, self.settings.max_query_terms)
            if await self.cases.plausible(terms, visibility.collections):
                vector.start()
        except Exception as exc:  # noqa: BLE001 - only an early start; the case leg runs and reports anyway
            log.debug("early query embedding not started", extra={"reason": type(exc).__name__})

    async def _with_cases(self, query: str, ranked: list[tuple[int, float]], legs: dict[str, list[LegHit]],
                          filters: SearchFilters, visibility: Visibility, strategy: str,
                          vector: Callable[[], Awaitable[np.ndarray]], timings: dict[str, float],
                          reasons: list[str]) -> CaseSelection | None:
        """The case leg under the leg timeout; when it fails, the plain ranking, with the reason named."""
        assert self.cases is not None
        ranking = Ranking([cid for cid, _ in ranked], [score for _, score in ranked],
                          {leg: {h.chunk_id: i for i, h in enumerate(hits, start=1)} for leg, hits in legs.items()})
        start = time.perf_counter()
        try:
            terms = await self.analyzer.aquery_terms(query, self.settings.max_query_terms)
            return await asyncio.wait_for(self.cases.select(terms, vector, ranking, filters, visibility, strategy),
                                          timeout=self.settings.leg_timeout_ms / 1000)
        except Exception as exc:  # noqa: BLE001 - case memory degrades a search, never fails it
            metrics.CASE_LOOKUPS.labels(outcome="error").inc()
            reasons.append(f"cases {_what_failed(exc)}; the plain ranking was served")
            log.warning("case leg failed", extra={"reason": f"{type(exc).__name__}: {exc}"})
            return None
        finally:
            timings["cases"] = round((time.perf_counter() - start) * 1000, 3)

    @staticmethod
    def _mark_cases(hits: list[Hit], selection: CaseSelection | None) -> None:
        """Which hits the cases moved up: `ranks["cases"]` (1 = the selector's most likely), the selector's
        probability in `scores["cases"]`, the cases behind it in `case_ids`."""
        for hit in hits:
            found = selection.hits.get(hit.chunk_id) if selection is not None else None
            hit.ranks["cases"] = found.rank if found else None
            hit.scores["cases"] = found.probability if found else None
            hit.case_ids = list(found.case_ids) if found else []

    async def _reranked(self, query: str, hits: list[Hit], timings: dict[str, float], reasons: list[str]) -> list[Hit]:
        """The candidates in the reranker's order, each scored by it (`scores["rerank"]`); when it fails or
        runs out of RERANK_TIMEOUT_S, the fused order, counted and named in `reasons`."""
        assert self.reranker is not None
        start = time.perf_counter()
        documents = [f"{h.title}\n{h.text}" if h.title else h.text for h in hits]
        try:
            scores = await asyncio.wait_for(self.reranker.rerank(query, documents), self.settings.rerank_timeout_s)
        except Exception as exc:  # noqa: BLE001 - any failure serves the fused order; the request goes on
            outcome = "timeout" if isinstance(exc, TimeoutError) else "error"
            metrics.RERANK_CALLS.labels(outcome=outcome).inc()
            reasons.append("rerank timed out; fused order served" if outcome == "timeout"
                           else "rerank failed; fused order served")
            log.warning("rerank failed", extra={"reason": f"{type(exc).__name__}: {exc}"})
            return hits
        finally:
            elapsed = time.perf_counter() - start
            timings["rerank"] = round(elapsed * 1000, 3)
            metrics.RERANK_DURATION.observe(elapsed)
        metrics.RERANK_CALLS.labels(outcome="ok").inc()
        for hit, score in zip(hits, scores, strict=True):
            hit.scores["rerank"] = score
            if score is not None:
                hit.score = score
        # Stable: documents the reranker left unscored stay behind the scored ones, in fused order.
        return sorted(hits, key=lambda h: (h.scores["rerank"] is None, -(h.scores["rerank"] or 0.0)))

    async def _hydrate(self, ranked: list[tuple[int, float]], legs: dict[str, list[LegHit]],
                       visibility: Visibility) -> list[Hit]:
        if not ranked:
            return []
        positions = {
            leg: {h.chunk_id: (rank, h.score) for rank, h in enumerate(hits, start=1)} for leg, hits in legs.items()
        }
        # Hydration applies the visibility again: a prefetched leg or a chunk moved meanwhile cannot slip out.
        rows = await self.store.hydrate([cid for cid, _ in ranked], visibility)
        hits = []
        for chunk_id, score in ranked:
            row = rows.get(chunk_id)
            if row is None:  # deleted between retrieval and hydration (or not visible)
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
                    collection=row.collection,
                    ranks={leg: positions.get(leg, {}).get(chunk_id, (None, None))[0] for leg in (BM25, DENSE)},
                    scores={leg: positions.get(leg, {}).get(chunk_id, (None, None))[1] for leg in (BM25, DENSE)},
                )
            )
        return hits
