"""Caching in front of any provider: query vectors in a process LRU, passage vectors in the
content-addressed `PassageCache`. Both are caches of a pure function of (identity, text)."""

from __future__ import annotations

import asyncio

import numpy as np
from cachetools import LRUCache

from apps.search.embeddings.base import EmbeddingProvider
from apps.search.embeddings.passage_cache import PassageCache


class CachedEmbedder:
    def __init__(self, inner: EmbeddingProvider, passages: PassageCache | None = None,
                 query_cache_size: int = 2048) -> None:
        self.inner = inner
        self._passages = passages
        self._queries: LRUCache[str, np.ndarray] | None = LRUCache(query_cache_size) if query_cache_size else None

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def dim(self) -> int:
        return self.inner.dim

    async def ready(self) -> None:
        await self.inner.ready()

    def count_tokens(self, text: str) -> int:
        return self.inner.count_tokens(text)

    async def embed_query(self, text: str) -> np.ndarray:
        cached = self._queries.get(text) if self._queries is not None else None
        if cached is not None:
            return cached
        vector = await self.inner.embed_query(text)
        if self._queries is not None:
            self._queries[text] = vector
        return vector

    async def embed_passages(self, texts: list[str]) -> np.ndarray:
        if self._passages is None or not texts:
            return await self.inner.embed_passages(texts)
        await self.inner.ready()
        found = await asyncio.to_thread(self._passages.get_many, self.name, texts)
        missing = [i for i in range(len(texts)) if i not in found]
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for i, vector in found.items():
            out[i] = vector
        if missing:
            fresh = await self.inner.embed_passages([texts[i] for i in missing])
            out[missing] = fresh
            await asyncio.to_thread(self._passages.put_many, self.name, [texts[i] for i in missing], fresh)
        return out

    async def aclose(self) -> None:
        await self.inner.aclose()
