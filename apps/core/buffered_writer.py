"""A buffered batch insert that isolates bad rows, under every `FlushedLog` (apps/core/flushed_log.py).

Rows append to an in-process buffer; a flush inserts them in one statement. A row the database
refuses (too long, a broken constraint) is found by splitting the batch, logged and dropped, so it
never holds the others back; while the database is unreachable rows wait, within bounds.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from apps.core.db import write_transaction

log = logging.getLogger(__name__)

T = TypeVar("T")

# PostgreSQL SQLSTATE classes that say "not now" rather than "not this row": connection exception,
# insufficient resources, operator intervention (shutdown, restart), transaction rollback (deadlock).
_TRANSIENT_SQLSTATE_CLASSES = ("08", "53", "57", "40")


def _unreachable(exc: BaseException) -> bool:
    """True when the database could not take any row just now (worth waiting for); False when it
    refused these rows (a constraint, a value too long, a value it cannot encode)."""
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated or isinstance(exc, (OperationalError, InterfaceError)):
            return True
        return str(getattr(exc.orig, "sqlstate", "") or "")[:2] in _TRANSIENT_SQLSTATE_CLASSES
    return isinstance(exc, (OSError, TimeoutError, PoolTimeoutError))


def _reason(exc: BaseException) -> str:
    # The driver's message names the constraint or type; SQLAlchemy's own text would quote every
    # parameter of the batch.
    return f"{type(exc).__name__}: {getattr(exc, 'orig', None) or exc}"[:300]


class BufferedWriter(Generic[T]):
    """Rows buffered in the process and inserted in one statement per flush.

    A row the database refuses cannot hold the others back: a failed batch is bisected until the
    refused rows are alone, and those are logged and dropped. While the database is unreachable the
    rows are kept for the next flush, at most `max_rows` of them and for at most `hold_s` seconds of
    outage, then dropped with a log line: nothing is retried forever, memory stays bounded.
    """

    def __init__(self, name: str, engine: AsyncEngine,
                 insert_rows: Callable[[AsyncConnection, list[T]], Awaitable[object]],
                 describe: Callable[[T], dict[str, Any]], *, max_rows: int = 50_000, hold_s: float = 60.0) -> None:
        self.name = name
        self._engine = engine
        self._insert = insert_rows
        self._describe = describe
        self._max_rows = max_rows
        self._hold_s = hold_s
        self._rows: list[T] = []
        self._overflow = 0  # rows refused because the buffer was full, reported at the next flush
        self._outage_since: float | None = None
        self._lock = asyncio.Lock()

    def __len__(self) -> int:
        return len(self._rows)

    def append(self, row: T) -> None:
        if len(self._rows) >= self._max_rows:
            self._overflow += 1
            return
        self._rows.append(row)

    async def flush(self) -> None:
        """Write what is buffered; never raises for a database problem."""
        async with self._lock:
            if self._overflow:
                log.error("buffer full while the database was unreachable: rows dropped",
                          extra={"writer": self.name, "rows": self._overflow, "max_rows": self._max_rows})
                self._overflow = 0
            if not self._rows:
                return
            rows, self._rows = self._rows, []
            held = await self._write(rows)
            if not held:
                self._outage_since = None
                return
            now = time.monotonic()
            if self._outage_since is None:
                self._outage_since = now
                log.warning("database unreachable: keeping rows for the next flush",
                            extra={"writer": self.name, "rows": len(held), "hold_s": self._hold_s})
            elif now - self._outage_since > self._hold_s:
                log.error("database unreachable for too long: rows dropped",
                          extra={"writer": self.name, "rows": len(held), "hold_s": self._hold_s})
                self._outage_since = None
                return
            self._rows[:0] = held  # ahead of the rows recorded while this flush ran
            if len(self._rows) > self._max_rows:
                self._overflow += len(self._rows) - self._max_rows
                del self._rows[self._max_rows:]

    async def _write(self, rows: list[T]) -> list[T]:
        """Insert `rows`, bisecting around refused ones; returns the rows to keep (database unreachable)."""
        try:
            async with write_transaction(self._engine) as conn:
                await self._insert(conn, rows)
            return []
        except Exception as exc:  # whatever the driver raises; sorted into "wait" or "refused" below
            if _unreachable(exc):
                return rows
            if len(rows) == 1:
                log.error("row refused by the database: dropped",
                          extra={"writer": self.name, "reason": _reason(exc), **self._describe(rows[0])})
                return []
        middle = len(rows) // 2
        held = await self._write(rows[:middle])
        if held:  # unreachable since: keep the untried half too
            return held + rows[middle:]
        return await self._write(rows[middle:])
