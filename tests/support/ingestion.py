"""An embedder that is slow, counts what it embeds and fails on request, and a service built on it."""

from __future__ import annotations

import asyncio
import time

import numpy as np

from apps.ingestion.service import IngestionService
from apps.runtime import Runtime


class SlowCountingEmbedder:
    """The real embedder's vectors, slowly, counting every text it is asked for; fails on request."""

    def __init__(self, inner, delay_s: float = 0.0, fail_on_call: int | None = None) -> None:
        self.inner, self.delay_s, self.fail_on_call = inner, delay_s, fail_on_call
        self.name, self.dim = inner.name, inner.dim
        self.calls: list[tuple[float, float, int]] = []  # (start, end, texts)

    async def ready(self) -> None:
        await self.inner.ready()

    def count_tokens(self, text: str) -> int:
        return self.inner.count_tokens(text)

    async def embed_query(self, text: str) -> np.ndarray:
        return await self.inner.embed_query(text)

    async def embed_passages(self, texts: list[str]) -> np.ndarray:
        start = time.perf_counter()
        if self.fail_on_call is not None and len(self.calls) + 1 == self.fail_on_call:
            raise RuntimeError("embedding server went away")
        await asyncio.sleep(self.delay_s)
        vectors = await self.inner.embed_passages(texts)
        self.calls.append((start, time.perf_counter(), len(texts)))
        return vectors

    async def aclose(self) -> None:
        return None


def service(runtime: Runtime, embedder: SlowCountingEmbedder) -> IngestionService:
    return IngestionService(runtime.store, embedder, runtime.ingestion.analyzer, runtime.settings)
