"""Rerankers behind an HTTP `/rerank` endpoint, in the two shapes servers speak:

- `tei` (text-embeddings-inference): `{"query", "texts", "truncate"}` → `[{"index", "score"}, ...]`
- `cohere` / `jina` (also vLLM, Infinity and llama.cpp's server): `{"model", "query", "documents",
  "top_n"}` → `{"results": [{"index", "relevance_score"}, ...]}`; Jina is asked not to echo the documents.

RERANK_BASE_URL is the prefix `/rerank` is appended to (`http://tei:8080`, `http://vllm:8000/v1`, a hosted
API's `.../v1` or `.../v2`). One attempt per query, no retries: reranking runs inside a search's latency
budget, and the caller serves the fused order when it fails.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import httpx

from apps.search.rerank.base import RerankError


@dataclass
class RerankHealth:
    """What /health and the dashboard show: the last call's outcome and latency, counts since start."""

    state: str = "unknown"  # ok | degraded (the last call failed) | unknown (not called yet)
    calls: int = 0
    errors: int = 0
    latency_ms: float | None = None
    last_error: str | None = None


class HTTPReranker:
    def __init__(self, shape: str, base_url: str, model: str | None = None, api_key: str | None = None, *,
                 timeout_s: float = 2.0, cost_per_call_usd: float = 0.0) -> None:
        if shape not in ("tei", "cohere", "jina"):
            raise ValueError(f"unknown reranker API {shape!r}; choose tei, cohere or jina")
        self.name = shape
        self.model = model or ""
        self.url = base_url.rstrip("/") + "/rerank"
        self.cost_per_call_usd = cost_per_call_usd
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._timeout = timeout_s
        self._loop: asyncio.AbstractEventLoop | None = None
        self.health = RerankHealth()

    def _bind(self) -> httpx.AsyncClient:
        """Connections belong to one event loop (a CLI or the tests run several, one after another)."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._loop = loop
            self._client = httpx.AsyncClient(timeout=self._timeout, headers=self._headers)
        return self._client

    def _body(self, query: str, documents: list[str]) -> dict:
        if self.name == "tei":
            return {"query": query, "texts": documents, "truncate": True}
        body: dict = {"query": query, "documents": documents, "top_n": len(documents)}
        if self.model:
            body["model"] = self.model
        if self.name == "jina":
            body["return_documents"] = False
        return body

    async def rerank(self, query: str, documents: list[str]) -> list[float | None]:
        if not documents:
            return []
        h = self.health
        h.calls += 1
        start = time.perf_counter()
        try:
            scores = await self._call(query, documents)
        except BaseException as exc:  # a cancelled search's timeout counts too: it is the reranker's latency
            h.errors += 1
            cancelled = isinstance(exc, asyncio.CancelledError)
            h.state = "degraded"
            h.last_error = "no answer within the search's RERANK_TIMEOUT_S" if cancelled else str(exc)
            raise
        finally:
            h.latency_ms = round((time.perf_counter() - start) * 1000, 2)
        h.state = "ok"
        return scores

    def status(self) -> dict[str, Any]:
        h = self.health
        return {"provider": self.name, "model": self.model, "url": self.url, "state": h.state, "calls": h.calls,
                "errors": h.errors, "latency_ms": h.latency_ms, "last_error": h.last_error}

    async def _call(self, query: str, documents: list[str]) -> list[float | None]:
        client = self._bind()
        try:
            reply = await client.post(self.url, json=self._body(query, documents))
        except httpx.TimeoutException:
            raise TimeoutError(f"reranker {self.url} took longer than {self._timeout:g} s") from None
        except httpx.TransportError as exc:
            raise RerankError(f"reranker {self.url} unreachable: {exc!r}") from None
        if reply.status_code != 200:
            raise RerankError(f"reranker {self.url} answered {reply.status_code}: {reply.text[:200]}")
        try:
            body = reply.json()
            rows = body if isinstance(body, list) else body["results"]
            pairs = [(int(r["index"]), float(r["score"] if "score" in r else r["relevance_score"])) for r in rows]
        except (ValueError, KeyError, TypeError) as exc:
            raise RerankError(f"reranker {self.url} sent an unexpected reply: {exc!r}") from None
        scores: list[float | None] = [None] * len(documents)
        for index, score in pairs:
            if not 0 <= index < len(documents):
                raise RerankError(f"reranker {self.url} scored document {index} of {len(documents)}")
            scores[index] = score
        return scores

    async def aclose(self) -> None:
        if self._loop is asyncio.get_running_loop():
            await self._client.aclose()
            self._loop = None
