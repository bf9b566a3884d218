"""`dtrag bench http`: search latency over HTTP against a real server, beside the same search in-process."""

from __future__ import annotations

import asyncio
import itertools
import statistics
import time
from typing import Any

import httpx

from apps.bench.beir import BeirDataset
from apps.bench.metrics import percentile
from apps.bench.retrieval import ingest_dataset
from apps.bench.server import serving
from apps.core.api_keys import ApiKeyStore, Scope
from apps.core.config import Settings
from apps.core.migrations import upgrade
from apps.runtime import build_runtime


def _summary(latencies: list[float], seconds: float, errors: int) -> dict[str, Any]:
    return {
        "requests": len(latencies),
        "errors": errors,
        "throughput_rps": round(len(latencies) / seconds, 1) if seconds else 0.0,
        "p50_ms": round(statistics.median(latencies), 2),
        "p95_ms": round(percentile(latencies, 95), 2),
        "p99_ms": round(percentile(latencies, 99), 2),
    }


async def _load(concurrency: int, total: int, call) -> tuple[list[float], float, int]:
    latencies: list[float] = []
    errors = 0
    counter = itertools.count()

    async def worker() -> None:
        nonlocal errors
        while (i := next(counter)) < total:
            start = time.perf_counter()
            ok = await call(i)
            latencies.append((time.perf_counter() - start) * 1000)
            errors += 0 if ok else 1

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, time.perf_counter() - start, errors


async def bench_http(dataset: BeirDataset, settings: Settings, concurrency: int, requests: int, workers: int,
                     top_k: int = 10) -> dict[str, Any]:
    upgrade(settings.database_url)
    runtime = build_runtime(settings)
    queries = list(dataset.queries.values())
    try:
        await ingest_dataset(runtime, dataset)
        _, api_key = await ApiKeyStore(runtime.engine, settings.secret_key).create(
            Scope.read, name="bench http", rate_limit_per_minute=1_000_000
        )
        await runtime.warm_up()

        async def in_process(i: int) -> bool:
            await runtime.search.search(queries[i % len(queries)], top_k=top_k)
            return True

        inproc = _summary(*await _load(concurrency, requests, in_process))
    finally:
        await runtime.close()

    # Caches off: 2,000 requests cycle over a few hundred queries, and cache hits are not search.
    env = {"SEARCH_CACHE_TTL_S": "0", "QUERY_EMBEDDING_CACHE_SIZE": "0",
           "EMBEDDING_CACHE_PATH": settings.embedding_cache_path or ""}
    async with serving(settings.database_url, workers, **env) as base:
        async with httpx.AsyncClient(base_url=base, timeout=60, limits=httpx.Limits(max_connections=concurrency)) as client:
            headers = {"X-API-Key": api_key}

            async def over_http(i: int) -> bool:
                r = await client.post("/api/v1/search", headers=headers,
                                      json={"q": queries[i % len(queries)], "final_topk": top_k})
                return r.status_code == 200

            await _load(concurrency, min(50, requests), over_http)  # warm every worker
            http = _summary(*await _load(concurrency, requests, over_http))
    return {
        "dataset": dataset.name,
        "backend": settings.backend,
        "concurrency": concurrency,
        "workers": workers,
        "http": http,
        "in_process": inproc,
        "http_over_in_process_p50": round(http["p50_ms"] / inproc["p50_ms"], 2) if inproc["p50_ms"] else None,
        "http_over_in_process_p95": round(http["p95_ms"] / inproc["p95_ms"], 2) if inproc["p95_ms"] else None,
    }
