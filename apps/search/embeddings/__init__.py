"""Embedding providers behind one interface; `get_embedder()` returns the configured one."""

from apps.search.embeddings.base import EmbeddingError, EmbeddingProvider
from apps.search.embeddings.factory import get_embedder

__all__ = ["EmbeddingError", "EmbeddingProvider", "get_embedder"]
