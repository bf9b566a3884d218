"""Operator actions that reach every worker: the audit trail of admin calls, and the cleanup broadcast.

A cleanup is a row in `admin_actions`; every serving process polls for the newest one (one indexed
read every CLEANUP_POLL_S) and, on a new one, clears its own caches, collects garbage and records
what it freed as a `cleanup-report` row. The worker that took the call does the same at once and
gathers the others' reports, so the caller learns what each worker freed, whichever worker answered.
Works the same on one host or many; only the database is shared.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import gc
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any

import psutil
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from apps.core.db import write_transaction
from apps.core.models import AdminAction, utcnow
from apps.core.periodic import Periodic

log = logging.getLogger(__name__)

CLEANUP, REPORT = "cleanup", "cleanup-report"
_MB = 1024 * 1024


def _trim_heap() -> bool:
    """Hand freed heap pages back to the OS (glibc keeps them otherwise, and RSS would not move)."""
    name = ctypes.util.find_library("c")
    try:
        return bool(ctypes.CDLL(name).malloc_trim(0)) if name else False
    except (OSError, AttributeError):  # not glibc
        return False


def rss_mb() -> float:
    return round(psutil.Process().memory_info().rss / _MB, 1)


class AdminActions:
    def __init__(self, engine: AsyncEngine, poll_s: float,
                 clear_caches: Callable[[], Awaitable[dict[str, int]]]) -> None:
        """`clear_caches` empties this process's caches and says how many bytes each held."""
        self._engine = engine
        self._clear_caches = clear_caches
        self.worker = f"{socket.gethostname()}:{os.getpid()}"
        self._seen: int | None = None  # the newest cleanup this process has applied or chosen to skip
        self._lock = asyncio.Lock()
        self._poller = Periodic("cleanup-listener", poll_s, self.poll)
        self.poll_s = poll_s

    async def record(self, actor: str, action: str, detail: dict[str, Any]) -> int:
        async with write_transaction(self._engine) as conn:
            result = await conn.execute(insert(AdminAction).values(at=utcnow(), actor=actor, action=action,
                                                                   detail=detail).returning(AdminAction.id))
            return int(result.scalar_one())

    async def _latest_cleanup(self) -> tuple[int, dict[str, Any]] | None:
        async with self._engine.connect() as conn:
            row = (await conn.execute(select(AdminAction.id, AdminAction.detail).where(AdminAction.action == CLEANUP)
                                      .order_by(AdminAction.id.desc()).limit(1))).first()
        return (int(row.id), row.detail) if row else None

    async def poll(self) -> dict[str, Any] | None:
        """Applies the newest cleanup if this process has not yet (its report, or None)."""
        latest = await self._latest_cleanup()
        async with self._lock:
            if self._seen is None:  # a process that starts after a cleanup has nothing to clear
                self._seen = latest[0] if latest else 0
                return None
            if latest is None or latest[0] <= self._seen:
                return None
            return await self._apply(*latest)

    async def _apply(self, cleanup_id: int, options: dict[str, Any]) -> dict[str, Any]:
        self._seen = max(self._seen or 0, cleanup_id)
        before = rss_mb()
        freed = await self._clear_caches() if options.get("clear_caches") else {}
        collected = None
        if options.get("force_gc"):
            # On the event loop: a full collection holds the GIL wherever it runs, and it is a rare
            # operator call that takes tens of milliseconds.
            collected = gc.collect()
            _trim_heap()
        report = {"cleanup_id": cleanup_id, "worker": self.worker, "rss_mb_before": before, "rss_mb_after": rss_mb(),
                  "caches_cleared": bool(options.get("clear_caches")), "freed_cache_bytes": freed,
                  "gc_collected": collected}
        await self.record(self.worker, REPORT, report)
        log.info("admin cleanup applied", extra=report)
        return report

    async def cleanup(self, actor: str, *, force_gc: bool, clear_caches: bool, expected_workers: int | None,
                      wait_s: float) -> dict[str, Any]:
        """Broadcasts a cleanup, applies it here, and waits up to `wait_s` for the other workers' reports
        (returning early once `expected_workers` have reported)."""
        options = {"force_gc": force_gc, "clear_caches": clear_caches}
        async with self._lock:
            cleanup_id = await self.record(actor, CLEANUP, options)
            await self._apply(cleanup_id, options)
        deadline = time.monotonic() + wait_s
        while True:
            reports = await self.reports(cleanup_id)
            if (expected_workers is not None and len(reports) >= expected_workers) or time.monotonic() >= deadline:
                break
            await asyncio.sleep(min(0.2, self.poll_s))
        return {"cleanup_id": cleanup_id, **options, "workers": reports,
                "rss_mb_before": round(sum(r["rss_mb_before"] for r in reports), 1),
                "rss_mb_after": round(sum(r["rss_mb_after"] for r in reports), 1),
                "expected_workers": expected_workers}

    async def reports(self, cleanup_id: int) -> list[dict[str, Any]]:
        async with self._engine.connect() as conn:
            # Reports follow their cleanup: only rows since it, one per worker per later cleanup at most.
            rows = (await conn.execute(select(AdminAction.detail)
                                       .where(AdminAction.action == REPORT, AdminAction.id > cleanup_id)
                                       .order_by(AdminAction.id))).scalars().all()
        return sorted((r for r in rows if r.get("cleanup_id") == cleanup_id), key=lambda r: r["worker"])

    async def history(self, limit: int = 20) -> list[dict[str, Any]]:
        async with self._engine.connect() as conn:
            rows = (await conn.execute(select(AdminAction).order_by(AdminAction.id.desc()).limit(limit))).all()
        return [{"id": r.id, "at": r.at.isoformat(), "actor": r.actor, "action": r.action, "detail": r.detail}
                for r in rows]

    def start(self) -> None:
        self._poller.start()

    def stop(self) -> None:
        self._poller.stop()
