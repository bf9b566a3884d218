"""`dtrag bench collections`: does scoping a search to one collection cost quality or time?

The BEIR corpus is split round-robin into N collections on one database (`full`); a second database
(`alone`) holds only the first collection, under the same name. For the queries whose relevant documents
lie in that collection, nDCG@10 of the search scoped to it on `full` is set against the unscoped search on
`alone` (the same documents, nothing else stored): they should agree within ±0.002. Latency: the same
queries on `full`, scoped and unscoped, p50 and p95 (the target: a scoped p95 within 1.3× of the
unscoped one for a collection holding 10 % of the corpus).
"""

from __future__ import annotations

import time
from typing import Any

from apps.bench.beir import BeirDataset
from apps.bench.metrics import evaluate
from apps.bench.retrieval import doc_scores
from apps.core.config import Settings
from apps.core.migrations import upgrade
from apps.core.stats import percentile
from apps.core.visibility import EVERYTHING, Visibility
from apps.ingestion.documents import SourceDocument
from apps.ingestion.errors import IngestError
from apps.ingestion.service import ProgressCallback
from apps.runtime import Runtime, build_runtime
from apps.search.types import SearchFilters

TOP_K = 15  # chunks: enough for nDCG@10 over documents of a chunk or two


def collection_name(i: int) -> str:
    return f"c{i:02d}"


def split(corpus: list[SourceDocument], n: int) -> list[SourceDocument]:
    """Every document in collection c{i mod n}, in corpus order."""
    for i, doc in enumerate(corpus):
        doc.collection = collection_name(i % n)
    return corpus


async def _ingest(runtime: Runtime, documents: list[SourceDocument], names: set[str],
                  on_progress: ProgressCallback | None) -> dict[str, Any]:
    for name in sorted(names):
        await runtime.collections.ensure(name)
    report = await runtime.ingestion.ingest(documents, on_progress=on_progress, skip_invalid=True)
    return {"documents": report.documents, "chunks": report.chunks, "new": report.created + report.replaced,
            "seconds": round(report.seconds, 2)}


async def _runs(runtime: Runtime, queries: dict[str, str], strategy: str, views: list[Visibility],
                ) -> list[tuple[dict[str, dict[str, float]], list[float]]]:
    """Each query searched once per view, the views' order alternating from query to query so neither
    gets the warmer caches; per view the run to evaluate and the latencies."""
    runs: list[tuple[dict[str, dict[str, float]], list[float]]] = [({}, []) for _ in views]
    for n, (qid, query) in enumerate(queries.items()):
        order = list(range(len(views)))
        for i in order if n % 2 == 0 else order[::-1]:
            start = time.perf_counter()
            result = await runtime.search.search(query, TOP_K, SearchFilters(visibility=views[i]), strategy)
            runs[i][1].append((time.perf_counter() - start) * 1000)
            runs[i][0][qid] = doc_scores(result.hits)
    return runs


async def _dense_index(runtime: Runtime, queries: dict[str, str], views: list[Visibility]) -> list[list[float]]:
    """The dense leg's store call alone (query vectors computed first), per view, alternating as `_runs`:
    what the scope costs the index, without the query embedding that dominates a search."""
    vectors = [await runtime.search.embedder.embed_query(q) for q in queries.values()]
    model = runtime.search.embedder.name
    latencies: list[list[float]] = [[] for _ in views]
    for n, vector in enumerate(vectors):
        order = list(range(len(views)))
        for i in order if n % 2 == 0 else order[::-1]:
            start = time.perf_counter()
            await runtime.store.dense(vector, model, TOP_K, SearchFilters(), views[i])
            latencies[i].append((time.perf_counter() - start) * 1000)
    return latencies


def _latency(values: list[float]) -> dict[str, float]:
    return {"p50_ms": round(percentile(values, 50), 2), "p95_ms": round(percentile(values, 95), 2)}


async def bench_collections(dataset: BeirDataset, settings: Settings, alone_url: str, collections: int,
                            strategies: list[str], on_progress: ProgressCallback | None = None) -> dict[str, Any]:
    skipped: list[IngestError] = []
    corpus = split(dataset.corpus(settings.max_document_bytes, skipped), collections)
    target = collection_name(0)
    members = {d.external_id for d in corpus if d.collection == target}
    qrels = {q: {d: r for d, r in rel.items() if d in members} for q, rel in dataset.qrels.items()}
    qrels = {q: rel for q, rel in qrels.items() if rel and q in dataset.queries}
    queries = {q: dataset.queries[q] for q in qrels}
    scoped = EVERYTHING.narrowed([target])
    upgrade(settings.database_url)
    upgrade(alone_url)
    report: dict[str, Any] = {"dataset": dataset.name, "backend": settings.backend, "collections": collections,
                              "target": target, "target_share": round(len(members) / max(len(corpus), 1), 4),
                              "queries": len(queries), "strategies": {}}
    async with build_runtime(settings) as full, \
            build_runtime(settings.model_copy(update={"database_url": alone_url})) as alone:
        for strategy in strategies:
            full.search.resolve(strategy)  # UnknownStrategyError before any ingest
        report["ingest"] = {"full": await _ingest(full, corpus, {d.collection for d in corpus}, on_progress),
                            "alone": await _ingest(alone, [d for d in corpus if d.collection == target], {target},
                                                   on_progress)}
        for runtime in (full, alone):  # models loaded, pages cached
            await runtime.warm_up()
            for query in list(queries.values())[:5]:
                await runtime.search.search(query, TOP_K, SearchFilters(visibility=EVERYTHING), strategies[0])
        for strategy in strategies:
            (scoped_run, scoped_ms), (_, unscoped_ms) = await _runs(full, queries, strategy, [scoped, EVERYTHING])
            [(alone_run, _)] = await _runs(alone, queries, strategy, [EVERYTHING])
            quality = {"scoped": evaluate(qrels, scoped_run)["ndcg@10"], "alone": evaluate(qrels, alone_run)["ndcg@10"]}
            scoped_latency, unscoped_latency = _latency(scoped_ms), _latency(unscoped_ms)
            report["strategies"][strategy] = {
                "ndcg@10_scoped": quality["scoped"], "ndcg@10_alone": quality["alone"],
                "ndcg@10_difference": round(quality["scoped"] - quality["alone"], 4),
                "within_0.002": abs(quality["scoped"] - quality["alone"]) <= 0.002,
                "scoped": scoped_latency, "unscoped": unscoped_latency,
                "p95_ratio": round(scoped_latency["p95_ms"] / unscoped_latency["p95_ms"], 3)
                if unscoped_latency["p95_ms"] else None,
            }
        scoped_ms, unscoped_ms = await _dense_index(full, queries, [scoped, EVERYTHING])
        report["dense_index"] = {"scoped": _latency(scoped_ms), "unscoped": _latency(unscoped_ms),
                                 "p95_ratio": round(percentile(scoped_ms, 95) / percentile(unscoped_ms, 95), 3)}
    report["skipped"] = len(skipped)
    return report
