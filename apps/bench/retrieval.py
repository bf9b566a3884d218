"""`dtrag bench retrieval`: ingest a BEIR set (or reuse it), run every query per strategy, evaluate."""

from __future__ import annotations

import time
from typing import Any

from apps.bench.beir import BeirDataset
from apps.bench.metrics import Run, evaluate
from apps.core.config import Settings
from apps.core.migrations import upgrade
from apps.core.stats import percentile
from apps.ingestion.errors import IngestError
from apps.ingestion.service import ProgressCallback
from apps.runtime import Runtime, build_runtime
from apps.search.types import Hit

DOC_DEPTH = 100  # Recall@100 / MAP@100 need 100 documents per query


def doc_scores(hits: list[Hit]) -> dict[str, float]:
    """A document scores as its best chunk."""
    scores: dict[str, float] = {}
    for hit in hits:
        key = hit.external_id or hit.doc_id
        if key not in scores:
            scores[key] = hit.score
        if len(scores) >= DOC_DEPTH:
            break
    return scores


async def ingest_dataset(
    runtime: Runtime, dataset: BeirDataset, on_progress: ProgressCallback | None = None
) -> dict[str, Any]:
    skipped: list[IngestError] = []
    corpus = dataset.corpus(runtime.settings.max_document_bytes, skipped)
    report = await runtime.ingestion.ingest(corpus, on_progress=on_progress, skip_invalid=True)
    return {
        "docs": report.documents,
        "skipped": len(skipped) + len(report.skipped),
        "new_docs": report.created + report.replaced,
        "reused": report.created + report.replaced == 0,
        "seconds": round(report.seconds, 2),
        "embed_seconds": round(report.embed_seconds, 2),
        "docs_per_s": round((report.created + report.replaced) / report.seconds, 2) if report.seconds else 0.0,
        "tokens_per_s": round(report.tokens_per_second, 1),
        "chunks": report.chunks,
    }


def _latency(values: list[float]) -> dict[str, float]:
    return {"p50_ms": round(percentile(values, 50), 2), "p95_ms": round(percentile(values, 95), 2),
            "p99_ms": round(percentile(values, 99), 2)}


async def run_queries(runtime: Runtime, dataset: BeirDataset, strategy: str) -> tuple[Run, dict[str, float]]:
    """The run to evaluate, and latencies: end to end, and of each leg as it ran beside the other."""
    run: Run = {}
    latencies: list[float] = []
    legs: dict[str, list[float]] = {}
    chunk_depth = DOC_DEPTH + DOC_DEPTH // 2  # extra chunks so multi-chunk documents still yield 100 docs
    for qid, query in dataset.queries.items():
        start = time.perf_counter()
        result = await runtime.search.search(query, top_k=chunk_depth, strategy=strategy)
        latencies.append((time.perf_counter() - start) * 1000)
        for leg, ms in result.timings_ms.items():
            legs.setdefault(leg, []).append(ms)
        run[qid] = doc_scores(result.hits)
    timing = _latency(latencies)
    for leg, values in sorted(legs.items()):
        timing[f"{leg}_leg_p50_ms"] = round(percentile(values, 50), 2)
    return run, timing


async def embedding_latency(runtime: Runtime, dataset: BeirDataset) -> dict[str, float]:
    """Query embedding alone (the dense leg's floor), each query once."""
    latencies = []
    for query in dataset.queries.values():
        start = time.perf_counter()
        await runtime.search.embedder.embed_query(query)
        latencies.append((time.perf_counter() - start) * 1000)
    return _latency(latencies)


async def bench_retrieval(
    dataset: BeirDataset,
    strategies: list[str],
    settings: Settings,
    on_progress: ProgressCallback | None = None,
) -> dict[str, Any]:
    upgrade(settings.database_url)
    async with build_runtime(settings) as runtime:
        for name in strategies:
            runtime.search.resolve(name)
        ingest = await ingest_dataset(runtime, dataset, on_progress)
        # Warm up: analyser and model handles, SQLite page cache, PostgreSQL buffers.
        await runtime.warm_up()
        for query in list(dataset.queries.values())[:5]:
            await runtime.search.search(query, top_k=10, strategy=strategies[0])
        results: dict[str, Any] = {}
        for name in strategies:
            run, timing = await run_queries(runtime, dataset, name)
            results[name] = {**evaluate(dataset.qrels, run), **timing}
        return {
            "dataset": dataset.name,
            "split": dataset.split,
            "queries": len(dataset.queries),
            "backend": settings.backend,
            "ingest": ingest,
            "query_embedding": await embedding_latency(runtime, dataset),
            "strategies": results,
        }
