"""A TTL cache of search results, correct across workers.

Keys include the corpus generation (bumped in the same transaction as every ingest, delete or cache
clear), so no worker can serve a result computed before a write. Entries live in Redis when it is
configured (shared by all workers), else in a per-process LRU bounded by bytes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import sys
import time
from typing import Any, Protocol

from cachetools import TLRUCache
from sqlalchemy.ext.asyncio import AsyncEngine

from apps.core.corpus_state import bump_generation, current_generation
from apps.core.db import write_transaction
from apps.search.types import Hit, SearchFilters, SearchResult

log = logging.getLogger(__name__)


class CacheBackend(Protocol):
    async def get(self, key: str) -> str | None: ...
    async def set(self, key: str, value: str, ttl_s: int) -> None: ...
    async def clear(self) -> None: ...


DEFAULT_CACHE_BYTES = 64 * 1024 * 1024
# The key (a 64-character digest), the entry tuple and the cache's links, beside the value itself.
_ENTRY_OVERHEAD = 400
# One result may take at most this share of the budget, so a few huge ones cannot flush the rest.
_MAX_ENTRY_SHARE = 16


def _entry_bytes(item: tuple[int, str]) -> int:
    return sys.getsizeof(item[1]) + _ENTRY_OVERHEAD


class LocalBackend:
    def __init__(self, max_bytes: int = DEFAULT_CACHE_BYTES) -> None:
        # Entries are (ttl_s, value); each expires ttl_s after it was stored, least recently used first out.
        # Bounded by bytes, not entries: one result holds up to 100 hits of chunk text.
        self._data: TLRUCache[str, tuple[int, str]] = TLRUCache(
            maxsize=max_bytes, ttu=lambda _key, item, now: now + item[0], timer=time.monotonic,
            getsizeof=_entry_bytes)
        self._max_entry_bytes = max_bytes // _MAX_ENTRY_SHARE

    @property
    def cached_bytes(self) -> int:
        return int(self._data.currsize)

    async def get(self, key: str) -> str | None:
        item = self._data.get(key)
        return item[1] if item is not None else None

    async def set(self, key: str, value: str, ttl_s: int) -> None:
        item = (ttl_s, value)
        if _entry_bytes(item) <= self._max_entry_bytes:  # a larger result is computed again if asked again
            self._data[key] = item
        else:
            self._data.pop(key, None)  # never leave an older value under the key

    async def clear(self) -> None:
        self._data.clear()


class RedisBackend:
    PREFIX = "dtrag:search:"

    def __init__(self, redis) -> None:  # redis.asyncio.Redis
        self._redis = redis

    async def get(self, key: str) -> str | None:
        value = await self._redis.get(self.PREFIX + key)
        return value.decode() if isinstance(value, bytes) else value

    async def set(self, key: str, value: str, ttl_s: int) -> None:
        await self._redis.set(self.PREFIX + key, value, ex=ttl_s)

    async def clear(self) -> None:
        async for key in self._redis.scan_iter(match=self.PREFIX + "*", count=500):
            await self._redis.delete(key)


def _encode(result: SearchResult) -> str:
    return json.dumps(dataclasses.asdict(result), ensure_ascii=False)


def _decode(raw: str) -> SearchResult:
    data = json.loads(raw)
    data["hits"] = [Hit(**h) for h in data["hits"]]
    return SearchResult(**data)


class SearchCache:
    def __init__(self, engine: AsyncEngine, backend: CacheBackend, ttl_s: int) -> None:
        self._engine = engine
        self.backend = backend
        self._ttl = ttl_s

    @property
    def enabled(self) -> bool:
        return self._ttl > 0

    async def key(self, **params: Any) -> str:
        """The entry's key: the corpus generation and every parameter of the search, which must include
        what it could see (`visibility`, a digest), or one key's hits would answer another's search."""
        if "visibility" not in params:
            raise TypeError("a search cache key needs the search's visibility")
        generation = await current_generation(self._engine)
        filters: SearchFilters | None = params.get("filters")
        params["filters"] = dataclasses.asdict(filters) if filters else None
        payload = json.dumps([generation, params], sort_keys=True, default=str, ensure_ascii=False)
        return hashlib.sha256(payload.encode()).hexdigest()

    async def get(self, key: str) -> SearchResult | None:
        try:
            raw = await self.backend.get(key)
        except Exception as exc:  # a cache outage costs latency, never the search
            log.warning("search cache unavailable: %s", type(exc).__name__)
            return None
        return _decode(raw) if raw is not None else None

    async def put(self, key: str, result: SearchResult) -> None:
        if not self.enabled or result.degraded:  # never pin a degraded answer
            return
        try:
            await self.backend.set(key, _encode(result), self._ttl)
        except Exception as exc:
            log.warning("search cache unavailable: %s", type(exc).__name__)

    async def clear(self) -> None:
        async with write_transaction(self._engine) as conn:
            await bump_generation(conn)
        await self.backend.clear()
