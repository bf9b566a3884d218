"""What a reranker offers the search service."""

from __future__ import annotations

from typing import Any, Protocol


class RerankError(RuntimeError):
    """The reranker refused, failed or answered something unusable; the search serves the fused order."""


class Reranker(Protocol):
    name: str  # the API shape: tei | cohere | jina
    model: str
    cost_per_call_usd: float

    async def rerank(self, query: str, documents: list[str]) -> list[float | None]:
        """A relevance score per document, in the documents' order (None: the server left it out)."""
        ...

    def status(self) -> dict[str, Any]:
        """For /health and the dashboard: provider, model, url, state ok|degraded|unknown, calls, errors,
        latency_ms and last_error of the last call."""
        ...
