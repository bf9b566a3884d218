"""Embedding providers behind one interface; `get_embedder()` returns the configured one."""

from apps.search.embeddings.base import EmbeddingProvider
from apps.search.embeddings.factory import get_embedder

__all__ = ["EmbeddingProvider", "get_embedder"]
