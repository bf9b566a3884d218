"""Parsing uploaded files in a worker process: PDF and HTML parsing is pure-Python CPU that, even on a
thread, holds the GIL and slows every request the server is answering meanwhile."""

from __future__ import annotations

import asyncio
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from apps.ingestion.documents import SourceDocument
from apps.ingestion.loaders import load_bytes


class DocumentParser:
    def __init__(self, processes: int = 1) -> None:
        self._processes = processes
        self._pool: ProcessPoolExecutor | None = None  # started on first use: most processes never parse

    async def parse(self, name: str, data: bytes, max_bytes: int, **fields: Any) -> list[SourceDocument]:
        """`load_bytes` in the parser process; raises its `IngestError` for a bad file."""
        if self._pool is None:
            # spawn, not fork: the server has threads (database drivers, the embedder) a fork would copy mid-lock.
            self._pool = ProcessPoolExecutor(self._processes, mp_context=multiprocessing.get_context("spawn"))
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, _parse, name, data, max_bytes, fields)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None


def _parse(name: str, data: bytes, max_bytes: int, fields: dict[str, Any]) -> list[SourceDocument]:
    return load_bytes(name, data, max_bytes, **fields)
