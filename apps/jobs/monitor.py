"""Automatic rollback of the `durable_worker` flag on the runbook's three triggers:

- Redis unreachable for more than ROLLBACK_REDIS_DOWN_S (5 min), continuously (one good ping resets);
- more than ROLLBACK_WORKER_CRASHES (3) worker crashes (an expired lease reclaimed) in
  ROLLBACK_CRASH_WINDOW_S (10 min);
- the oldest queued job waiting more than ROLLBACK_QUEUE_LATENCY_S (10 min).

The flag goes off through the audited override path (actor `jobs-monitor`, the reason recorded), as
the canary does; a critical log line and an optional webhook follow. No flapping: the monitor only
ever turns the flag off, and only while it is on; an operator turns it back on. Time comes from a
clock the tests control."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx

from apps.core import metrics
from apps.core.config import Settings
from apps.core.periodic import Periodic
from apps.jobs.queue import JobQueue
from apps.jobs.store import JobStore
from apps.rollout.flags import FlagContext, FlagService

log = logging.getLogger(__name__)

FLAG = "durable_worker"
ACTOR = "jobs-monitor"


class RollbackMonitor:
    def __init__(self, store: JobStore, queue: JobQueue, flags: FlagService, settings: Settings,
                 clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._queue = queue
        self._flags = flags
        self._settings = settings
        self._clock = clock
        self._redis_down_since: float | None = None
        self._periodic = Periodic("jobs-monitor", settings.job_monitor_interval_s, self.check)
        self.last: dict[str, Any] = {}

    def queue_active(self) -> bool:
        return self._flags.is_enabled(FLAG, FlagContext()) and self._settings.worker_system_enabled

    async def triggers(self) -> list[str]:
        """The rollback reasons that hold now (empty: healthy)."""
        now = self._clock()
        reasons = []
        if self._queue.configured:
            if await self._queue.ping():
                self._redis_down_since = None
            else:
                self._redis_down_since = self._redis_down_since if self._redis_down_since is not None else now
                down = now - self._redis_down_since
                if down > self._settings.rollback_redis_down_s:
                    reasons.append(f"redis unreachable for {down:.0f} s > {self._settings.rollback_redis_down_s:g} s")
        since = datetime.fromtimestamp(now - self._settings.rollback_crash_window_s, UTC)
        crashes = await self._store.crashes_since(since)
        if crashes > self._settings.rollback_worker_crashes:
            reasons.append(f"{crashes} worker crashes in {self._settings.rollback_crash_window_s:g} s "
                           f"> {self._settings.rollback_worker_crashes}")
        depth, oldest = await self._store.queue_depth(now=datetime.fromtimestamp(now, UTC))
        metrics.JOB_QUEUE_DEPTH.set(depth)
        if oldest is not None and oldest > self._settings.rollback_queue_latency_s:
            reasons.append(f"oldest queued job waiting {oldest:.0f} s > {self._settings.rollback_queue_latency_s:g} s")
        return reasons

    async def check(self) -> dict[str, Any]:
        await self._flags.refresh(force=True)
        reasons = await self.triggers()
        action = "none"
        if reasons and self.queue_active():
            action = await self._rollback(reasons)
        elif reasons:
            action = "already_off"
        self.last = {"reasons": reasons, "action": action, "at": self._clock()}
        return self.last

    async def _rollback(self, reasons: list[str]) -> str:
        why = "automatic rollback: " + "; ".join(reasons)
        await self._flags.set(FLAG, actor=ACTOR, reason=why, enabled=False)
        log.critical("durable worker rolled back", extra={"flag": FLAG, "reason": why})
        if self._settings.jobs_webhook_url:
            try:
                async with httpx.AsyncClient(timeout=5) as client:
                    await client.post(self._settings.jobs_webhook_url, json={
                        "event": "durable_worker_rollback", "flag": FLAG, "reason": why,
                        "at": datetime.fromtimestamp(self._clock(), UTC).isoformat()})
            except httpx.HTTPError as exc:
                log.error("jobs webhook failed: %s", type(exc).__name__)
        return "rolled_back"

    def start(self) -> None:
        self._periodic.start()

    def stop(self) -> None:
        self._periodic.stop()
