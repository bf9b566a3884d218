"""What the API and the CLI call. Submitting stores the job (and its payload, and its idempotency
key) in one transaction, then hands the id to RQ when the queue is on, or to the in-process runner:
the queue being off, unconfigured or unreachable (short connect timeout) sends the same job
in-process with the reason recorded in the row, an event and a metric."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from apps.core import metrics
from apps.core.config import Settings
from apps.core.db import write_transaction
from apps.core.idempotency import IdempotencyStore, StoredResponse
from apps.core.models import new_id
from apps.jobs.executor import JobExecutor
from apps.jobs.monitor import RollbackMonitor
from apps.jobs.queue import JobQueue, QueueUnavailableError
from apps.jobs.runner import InProcessRunner
from apps.jobs.store import IN_PROCESS, QUEUE, TERMINAL, JobStore, Payload, view

log = logging.getLogger(__name__)


class _KeyTaken(Exception):
    """Rolls back a submission whose idempotency key a concurrent request reserved first."""


@dataclass(frozen=True)
class Submitted:
    job: dict[str, Any]
    status_code: int
    replayed: bool


@dataclass
class JobService:
    store: JobStore
    queue: JobQueue
    runner: InProcessRunner
    executor: JobExecutor
    monitor: RollbackMonitor
    idempotency: IdempotencyStore
    settings: Settings

    def _queue_refusal(self) -> str | None:
        """Why a new job does not go to the queue (None: it does)."""
        if not self.settings.worker_system_enabled:
            return "WORKER_SYSTEM_ENABLED is false"
        if not self.monitor.queue_active():
            return "durable_worker flag is off"
        if not self.queue.configured:
            return "REDIS_URL is not set"
        return None

    async def submit(self, kind: str, *, params: dict[str, Any] | None = None, payloads: Sequence[Payload] = (),
                     total: int = 0, idempotency: tuple[str, str, str] | None = None,
                     run_here: bool = True) -> Submitted:
        """Accept a job. With `idempotency` (scope, key, request hash) a replay returns the first
        response; the same key on another body raises IdempotencyConflictError. `run_here=False`
        (the CLI, which exits) leaves an in-process job to a serving process's sweep."""
        if idempotency:
            previous = await self.idempotency.replay(*idempotency)
            if previous is not None:
                return Submitted(previous.body, previous.status_code, True)
        refusal = self._queue_refusal()
        mode = QUEUE if refusal is None else IN_PROCESS
        job_id = new_id()
        accepted = {"job_id": job_id, "status": "queued"}
        try:
            async with write_transaction(self.store.engine) as conn:
                await self.store.create(conn, job_id, kind, mode, refusal or "", self.settings.job_max_attempts,
                                        params, payloads, total, idempotency)
                if idempotency and not await self.idempotency.reserve(conn, *idempotency,
                                                                       StoredResponse(202, accepted)):
                    raise _KeyTaken
        except _KeyTaken:
            previous = await self.idempotency.replay(*idempotency)  # type: ignore[misc]
            assert previous is not None
            return Submitted(previous.body, previous.status_code, True)
        metrics.JOBS.labels(kind, "queued", mode).inc()
        if mode == QUEUE:
            try:
                await self.queue.enqueue(job_id)
            except QueueUnavailableError as exc:
                await self._fall_back(job_id, str(exc), run_here)
        elif run_here:
            self.runner.submit(job_id)
        log.info("job accepted", extra={"job_id": job_id, "job_kind": kind, "mode": mode})
        return Submitted(accepted, 202, False)

    async def _fall_back(self, job_id: str, reason: str, run_here: bool = True) -> None:
        if await self.store.switch_mode(job_id, IN_PROCESS, f"fallback: {reason}"):
            await self.store.event(job_id, "fallback", reason=reason)
            metrics.JOB_FALLBACKS.labels("redis_unreachable").inc()
            log.warning("queue unavailable; job runs in-process", extra={"job_id": job_id, "reason": reason})
            if run_here:
                self.runner.submit(job_id)

    async def wait(self, job_id: str, timeout_s: float) -> dict[str, Any] | None:
        """The job once it is final, or None if it is not within `timeout_s`."""
        async with asyncio.timeout(timeout_s):
            while True:
                job = await self.store.get(job_id)
                if job is None or job.status in TERMINAL:
                    return view(job) if job is not None else None
                await asyncio.sleep(0.05)
        return None  # pragma: no cover

    async def get(self, job_id: str) -> dict[str, Any] | None:
        job = await self.store.get(job_id)
        return view(job) if job is not None else None

    async def list(self, status: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        return [view(j) for j in await self.store.list(status, limit)]

    async def cancel(self, job_id: str) -> bool:
        cancelled = await self.store.cancel(job_id)
        if cancelled:
            metrics.JOBS.labels((await self.store.get(job_id)).kind, "cancelled", "any").inc()
        return cancelled

    async def retry(self, job_id: str) -> bool:
        """A failed, cancelled or dead-lettered job runs again (queue if on, else in-process)."""
        refusal = self._queue_refusal()
        mode = QUEUE if refusal is None else IN_PROCESS
        if not await self.store.requeue(job_id, mode, refusal or "retried by an operator"):
            return False
        if mode == QUEUE:
            try:
                await self.queue.enqueue(job_id)
            except QueueUnavailableError as exc:
                await self._fall_back(job_id, str(exc))
        else:
            self.runner.submit(job_id)
        return True

    async def migrate_pending(self) -> dict[str, list[str]]:
        """Pending queue jobs → in-process, each exactly once (a conditional update); a job that
        cannot run here (its payload is gone, or no attempts are left) is dead-lettered."""
        moved, dead = [], []
        for job in await self.store.pending_queue_jobs():
            if job.attempt >= job.max_attempts or (job.kind == "ingest" and not await self.store.has_payload(job.id)):
                if await self.store.dead_letter(job.id, "cannot move to in-process execution: "
                                                + ("no attempts left" if job.attempt >= job.max_attempts
                                                   else "its payload is missing")):
                    dead.append(job.id)
                continue
            if await self.store.switch_mode(job.id, IN_PROCESS, "migrated from the queue by an operator"):
                moved.append(job.id)
                self.runner.submit(job.id)
        return {"moved": moved, "dead_lettered": dead}

    async def stats(self) -> dict[str, Any]:
        depth, oldest = await self.store.queue_depth()
        queue = await self.queue.status()
        return {
            "background_tasks": {"active": self.runner.active, "pending": self.runner.pending,
                                 "limit": self.settings.job_concurrency},
            "queue": {"enabled": self._queue_refusal() is None, "reachable": queue.reachable, "depth": depth,
                      "rq_depth": queue.depth, "workers": queue.workers,
                      "oldest_queued_s": round(oldest, 3) if oldest is not None else None, "error": queue.error},
            "jobs": await self.store.counts(),
            "monitor": self.monitor.last,
        }

    async def worker_system(self) -> dict[str, Any]:
        """/health's `worker_system`."""
        enabled = self._queue_refusal() is None
        depth, oldest = await self.store.queue_depth()
        queue = await self.queue.status() if enabled else None
        rq = enabled and queue is not None and queue.reachable
        return {"enabled": enabled, "type": "rq" if rq else "background_tasks", "queue_depth": depth,
                "workers": queue.workers if queue else None,
                "oldest_queued_s": round(oldest, 3) if oldest is not None else None,
                "active_in_process": self.runner.active,
                **({"reason": self._queue_refusal() or (queue.error if queue else None)} if not rq else {})}

    def start(self) -> None:
        self.runner.start()
        self.monitor.start()

    async def close(self) -> None:
        self.monitor.stop()
        await self.runner.close()
        self.queue.close()


def build_jobs(engine: Any, ingestion: Any, parser: Any, bandit: Any, flags: Any, idempotency: IdempotencyStore,
               settings: Settings) -> JobService:
    from apps.jobs.kinds import JobKinds

    store = JobStore(engine, settings.job_lease_s)
    queue = JobQueue(settings)
    executor = JobExecutor(store, JobKinds(ingestion, parser, bandit, settings.job_batch_documents), settings)
    return JobService(store, queue, InProcessRunner(executor, store, queue, settings), executor,
                      RollbackMonitor(store, queue, flags, settings), idempotency, settings)
