"""Reranking: a cross-encoder behind an HTTP `/rerank` API reorders a strategy's fused candidates."""

from apps.search.rerank.base import RerankError, Reranker
from apps.search.rerank.factory import build_reranker

__all__ = ["RerankError", "Reranker", "build_reranker"]
