"""A log the hot path appends to and a background loop writes: a `BufferedWriter` flushed every
`interval_s` by a `Periodic`, and flushed once more on stop so a clean shutdown loses nothing.
The request log, the tool-call audit, the bandit's decision log and the case memory's decision log
are each one of these."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from apps.core.buffered_writer import BufferedWriter
from apps.core.periodic import Periodic

T = TypeVar("T")


class FlushedLog(Generic[T]):
    def __init__(self, name: str, engine: AsyncEngine,
                 insert_rows: Callable[[AsyncConnection, list[T]], Awaitable[object]],
                 describe: Callable[[T], dict[str, Any]], interval_s: float) -> None:
        self._engine = engine
        self._writer: BufferedWriter[T] = BufferedWriter(name, engine, insert_rows, describe)
        self._flusher = Periodic(f"{name}-flush", interval_s, self.flush)

    def append(self, row: T) -> None:
        self._writer.append(row)

    async def flush(self) -> None:
        await self._writer.flush()

    def start(self) -> None:
        self._flusher.start()

    async def stop(self) -> None:
        self._flusher.stop()
        await self.flush()
