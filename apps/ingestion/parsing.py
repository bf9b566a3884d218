"""Parsing uploaded files in worker processes: PDF and HTML parsing is pure-Python CPU that, even on a
thread, holds the GIL and slows every request the server is answering meanwhile.

Each parse has a deadline (PARSE_TIMEOUT_S): a file that takes longer has its worker killed and
fails alone with an `IngestError` naming it, as does a file whose worker dies (a crash in a native
parser, the OOM killer); the pool (pebble's) starts a new worker, and a pool that broke as a whole (a
worker that died idle) is replaced before the next parse, so one bad file never fails the uploads after it.
"""

from __future__ import annotations

import asyncio
import multiprocessing
from collections.abc import Callable
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from pebble import ProcessExpired, ProcessPool

from apps.ingestion.documents import SourceDocument
from apps.ingestion.errors import IngestError
from apps.ingestion.loaders import load_bytes

# name, bytes, max_bytes, fields → documents; runs in the worker, so it must be a module-level function.
ParseFunction = Callable[[str, bytes, int, dict[str, Any]], list[SourceDocument]]


def parse_file(name: str, data: bytes, max_bytes: int, fields: dict[str, Any]) -> list[SourceDocument]:
    return load_bytes(name, data, max_bytes, **fields)


class DocumentParser:
    def __init__(self, timeout_s: float, processes: int = 1, parse: ParseFunction = parse_file) -> None:
        self.timeout_s = timeout_s
        self._processes = processes
        self.parse_function = parse
        self._pool: ProcessPool | None = None  # started on first use: most processes never parse

    async def _running_pool(self) -> ProcessPool:
        if self._pool is not None and not self._pool.active:  # broke as a whole: a worker died idle, say
            await asyncio.to_thread(self.close)
        if self._pool is None:
            # spawn, not fork: the server has threads (database drivers, the embedder) a fork would copy mid-lock.
            self._pool = ProcessPool(self._processes, context=multiprocessing.get_context("spawn"))
        return self._pool

    async def parse(self, name: str, data: bytes, max_bytes: int, **fields: Any) -> list[SourceDocument]:
        """The parse function in a worker process; raises its `IngestError` for a bad file, and one
        of ours for a parse past the deadline or a worker that died over this file."""
        try:
            return await self._parse_once(name, data, max_bytes, fields)
        except BrokenProcessPool:  # the pool broke as a whole, not over this file: once more, on a new one
            await asyncio.to_thread(self.close)
            return await self._parse_once(name, data, max_bytes, fields)

    async def _parse_once(self, name: str, data: bytes, max_bytes: int, fields: dict[str, Any]) -> list[SourceDocument]:
        pool = await self._running_pool()
        try:
            return await asyncio.wrap_future(pool.schedule(self.parse_function, (name, data, max_bytes, fields),
                                                           timeout=self.timeout_s))
        except TimeoutError:
            raise IngestError(name, f"parsing took longer than {self.timeout_s:g} s (PARSE_TIMEOUT_S); "
                                    "the parser was stopped") from None
        except ProcessExpired as exc:
            raise IngestError(name, f"the parser process died while reading this file (exit code {exc.exitcode})"
                              ) from None

    def close(self) -> None:
        """Stop the workers (up to a few seconds while a parse is killed)."""
        if self._pool is not None:
            pool, self._pool = self._pool, None
            pool.stop()
            pool.join()
