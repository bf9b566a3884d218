"""`dtrag bench doors`: the same searches through each door of a real server, one at a time.

REST `/api/v1/search` against MCP's `search` tool over streamable HTTP (the SDK's client, one session),
and REST `/answer` against the OpenAI-compatible chat API (`/v1/chat/completions`, whose sources are the
answer's evidence): p50/p95 latency per door, the overhead of each door over its REST twin, and the
share of queries whose top-k ids are identical (they must be: every door calls the same services).
Caches are off, so every request does the whole search.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from apps.bench.beir import BeirDataset
from apps.bench.retrieval import ingest_dataset
from apps.bench.server import serving
from apps.core.api_keys import Scope
from apps.core.config import Settings
from apps.core.migrations import upgrade
from apps.core.stats import percentile
from apps.runtime import build_runtime

Door = Callable[[str], Awaitable[list[int]]]


async def _run(doors: dict[str, Door], queries: list[str], warm: int = 5) -> tuple[dict[str, Any], dict[str, list]]:
    """Each query through every door in turn (the order rotating), so drift in the machine's load falls on all
    doors alike."""
    names = list(doors)
    for q in queries[:warm]:
        for name in names:
            await doors[name](q)
    latencies: dict[str, list[float]] = {n: [] for n in names}
    ids: dict[str, list[list[int]]] = {n: [] for n in names}
    for i, q in enumerate(queries):
        for name in names[i % len(names):] + names[:i % len(names)]:
            start = time.perf_counter()
            ids[name].append(await doors[name](q))
            latencies[name].append((time.perf_counter() - start) * 1000)
    summary = {n: {"requests": len(queries), "p50_ms": round(percentile(latencies[n], 50), 2),
                   "p95_ms": round(percentile(latencies[n], 95), 2)} for n in names}
    return summary, ids


def _identical(a: list[list[int]], b: list[list[int]]) -> float:
    return round(sum(x == y for x, y in zip(a, b, strict=True)) / len(a), 4) if a else 0.0


def _differing(queries: list[str], a: list[list[int]], b: list[list[int]], most: int = 5) -> list[dict[str, Any]]:
    """The first few queries whose ids differ between two doors, with both lists: what to look at."""
    return [{"query": q[:120], "ids": [x, y]} for q, x, y in zip(queries, a, b, strict=True) if x != y][:most]


async def bench_doors(dataset: BeirDataset, settings: Settings, queries: int = 200, top_k: int = 10,
                      workers: int = 1) -> dict[str, Any]:
    upgrade(settings.database_url)
    texts = list(dataset.queries.values())
    texts = [texts[i % len(texts)] for i in range(queries)]
    async with build_runtime(settings) as runtime:
        await ingest_dataset(runtime, dataset)
        _, key = await runtime.keys.create(Scope.read, name="bench doors", rate_limit_per_minute=1_000_000)
    env = {"SEARCH_CACHE_TTL_S": "0", "QUERY_EMBEDDING_CACHE_SIZE": "0",
           "EMBEDDING_CACHE_PATH": settings.embedding_cache_path or ""}
    answer_k = min(top_k, 20)
    async with serving(settings.database_url, workers, **env) as (base, _):
        async with httpx.AsyncClient(base_url=base, timeout=120, headers={"X-API-Key": key}) as http:

            async def rest_search(q: str) -> list[int]:
                r = await http.post("/api/v1/search", json={"q": q, "final_topk": top_k})
                return [h["chunk_id"] for h in r.raise_for_status().json()["hits"]]

            async def rest_answer(q: str) -> list[int]:
                r = await http.post("/answer", json={"q": q[:4000], "final_topk": answer_k})
                return [s["chunk_id"] for s in r.raise_for_status().json()["sources"]]

            async def chat(q: str) -> list[int]:
                r = await http.post("/v1/chat/completions", json={
                    "model": "dtrag-answer", "top_k": answer_k, "messages": [{"role": "user", "content": q[:4000]}]})
                return [s["chunk_id"] for s in r.raise_for_status().json()["sources"]]

            mcp_http = httpx2.AsyncClient(headers={"X-API-Key": key}, timeout=120)
            async with Client(streamable_http_client(f"{base}/mcp", http_client=mcp_http)) as client:

                async def mcp_search(q: str) -> list[int]:
                    result = await client.call_tool("search", {"query": q, "top_k": top_k})
                    if result.is_error or result.structured_content is None:
                        raise RuntimeError(f"MCP search failed: {result.content}")
                    return [h["chunk_id"] for h in result.structured_content["hits"]]

                results, ids = await _run({"rest_search": rest_search, "mcp_search": mcp_search,
                                           "rest_answer": rest_answer, "chat": chat}, texts)
    return {
        "dataset": dataset.name,
        "backend": settings.backend,
        "queries": queries,
        "top_k": top_k,
        "workers": workers,
        "doors": results,
        "mcp_overhead_p50_ms": round(results["mcp_search"]["p50_ms"] - results["rest_search"]["p50_ms"], 2),
        "mcp_overhead_p95_ms": round(results["mcp_search"]["p95_ms"] - results["rest_search"]["p95_ms"], 2),
        "chat_overhead_p50_ms": round(results["chat"]["p50_ms"] - results["rest_answer"]["p50_ms"], 2),
        "chat_overhead_p95_ms": round(results["chat"]["p95_ms"] - results["rest_answer"]["p95_ms"], 2),
        "identical_top_k_mcp_vs_rest": _identical(ids["mcp_search"], ids["rest_search"]),
        "identical_sources_chat_vs_rest": _identical(ids["chat"], ids["rest_answer"]),
        "differing": {"mcp_vs_rest": _differing(texts, ids["mcp_search"], ids["rest_search"]),
                      "chat_vs_rest": _differing(texts, ids["chat"], ids["rest_answer"])},
    }
