"""`dtrag bench http`: search latency over HTTP against a real server, beside the same search in-process.

Both runs also report the CPU time each search costs (the server's processes for HTTP). On a machine
that is CPU-bound at this concurrency, Little's law puts a floor under the mean latency:
concurrency × CPU per request / cores, whatever the software does around it.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from typing import Any

import httpx

from apps.bench.beir import BeirDataset
from apps.bench.retrieval import ingest_dataset
from apps.bench.server import cpu_seconds, serving
from apps.core.api_keys import Scope
from apps.core.config import Settings
from apps.core.migrations import upgrade
from apps.core.stats import percentile
from apps.runtime import build_runtime


def _summary(latencies: list[float], seconds: float, errors: int, cpu_s: float, concurrency: int) -> dict[str, Any]:
    cpu_ms = cpu_s * 1000 / len(latencies)
    return {
        "requests": len(latencies),
        "errors": errors,
        "throughput_rps": round(len(latencies) / seconds, 1) if seconds else 0.0,
        "p50_ms": round(percentile(latencies, 50), 2),
        "p95_ms": round(percentile(latencies, 95), 2),
        "p99_ms": round(percentile(latencies, 99), 2),
        "cpu_ms_per_request": round(cpu_ms, 2),
        "cpu_bound_mean_floor_ms": round(concurrency * cpu_ms / (os.cpu_count() or 1), 1),
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
                     strategy: str | None = None, top_k: int = 10) -> dict[str, Any]:
    upgrade(settings.database_url)
    queries = list(dataset.queries.values())
    async with build_runtime(settings) as runtime:
        await ingest_dataset(runtime, dataset)
        _, api_key = await runtime.keys.create(Scope.read, name="bench http", rate_limit_per_minute=1_000_000)
        await runtime.warm_up()

        runtime.search.resolve(strategy)

        async def in_process(i: int) -> bool:
            await runtime.search.search(queries[i % len(queries)], top_k=top_k, strategy=strategy)
            return True

        cpu = time.process_time()
        inproc_run = await _load(concurrency, requests, in_process)
        inproc = _summary(*inproc_run, time.process_time() - cpu, concurrency)

    # Caches off: 2,000 requests cycle over a few hundred queries, and cache hits are not search.
    env = {"SEARCH_CACHE_TTL_S": "0", "QUERY_EMBEDDING_CACHE_SIZE": "0",
           "EMBEDDING_CACHE_PATH": settings.embedding_cache_path or ""}
    async with serving(settings.database_url, workers, **env) as (base, pid):
        async with httpx.AsyncClient(base_url=base, timeout=60, limits=httpx.Limits(max_connections=concurrency)) as client:
            headers = {"X-API-Key": api_key}

            async def over_http(i: int) -> bool:
                body = {"q": queries[i % len(queries)], "final_topk": top_k} | ({"strategy": strategy} if strategy else {})
                r = await client.post("/api/v1/search", headers=headers, json=body)
                return r.status_code == 200

            await _load(concurrency, min(50, requests), over_http)  # warm every worker
            cpu = cpu_seconds(pid)
            http_run = await _load(concurrency, requests, over_http)
            http = _summary(*http_run, cpu_seconds(pid) - cpu, concurrency)
    return {
        "dataset": dataset.name,
        "backend": settings.backend,
        "concurrency": concurrency,
        "workers": workers,
        "strategy": strategy or settings.default_strategy,
        "cores": os.cpu_count(),
        "http": http,
        "in_process": inproc,
        "http_over_in_process_p50": round(http["p50_ms"] / inproc["p50_ms"], 2) if inproc["p50_ms"] else None,
        "http_over_in_process_p95": round(http["p95_ms"] / inproc["p95_ms"], 2) if inproc["p95_ms"] else None,
    }
