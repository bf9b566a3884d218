"""What the API and the CLI call. Submitting stores the job (and its payload, its idempotency key and
the API key that owns it) in one transaction, then hands the id to RQ when the queue is on, or to the
in-process runner: the queue being off, unconfigured or unreachable (short connect timeout) sends the
same job in-process with the reason recorded in the row, an event and a metric. An owner has at most
JOB_MAX_QUEUED_PER_KEY unfinished jobs, sees only its own, and cancels only its own."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from apps.core import metrics
from apps.core.config import Settings
from apps.core.db import write_transaction
from apps.core.idempotency import IdempotencyStore, StoredResponse
from apps.core.models import new_id
from apps.core.visibility import Visibility
from apps.jobs.executor import JobExecutor
from apps.jobs.monitor import RollbackMonitor
from apps.jobs.queue import JobQueue, QueueUnavailableError
from apps.jobs.runner import InProcessRunner
from apps.jobs.store import IN_PROCESS, QUEUE, JobStore, Payload
from apps.jobs.types import JobKind, JobStatus, JobView

log = logging.getLogger(__name__)


class _KeyTaken(Exception):
    """Rolls back a submission whose idempotency key a concurrent request reserved first."""


class QuotaExceededError(RuntimeError):
    """The owner already has as many unfinished jobs as it may; nothing was stored."""

    def __init__(self, unfinished: int, limit: int) -> None:
        super().__init__(f"this API key has {unfinished} queued or running jobs, the most it may have "
                         f"(JOB_MAX_QUEUED_PER_KEY={limit}); wait for some to finish or cancel some "
                         "(GET /api/v1/jobs?status=queued), then submit again")
        self.unfinished = unfinished
        self.limit = limit


class JobStateError(RuntimeError):
    """The job is not in a state that allows what was asked (the message says which)."""


@dataclass(frozen=True)
class Submitted:
    job_id: str
    status: JobStatus  # as first accepted (a replay repeats the first answer)
    replayed: bool


def _accepted(job_id: str) -> StoredResponse:
    # What the idempotency store replays for the key: the job as first accepted. The store keeps a
    # response code with it, always the acceptance's.
    return StoredResponse(202, {"job_id": job_id, "status": JobStatus.queued.value})


def _submitted(previous: StoredResponse) -> Submitted:
    return Submitted(previous.body["job_id"], JobStatus(previous.body["status"]), True)


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

    async def submit(self, kind: JobKind | str, *, params: dict[str, Any] | None = None,
                     payloads: Sequence[Payload] = (), total: int = 0,
                     idempotency: tuple[str, str, str] | None = None, owner: str | None = None,
                     run_here: bool = True) -> Submitted:
        """Accept a job. With `idempotency` (scope, key, request hash) a replay returns the first
        acceptance; the same key on another body raises IdempotencyConflictError. An `owner` (an API
        key id) over its quota raises QuotaExceededError. `run_here=False` (the CLI, which exits) leaves
        an in-process job to a serving process's sweep."""
        kind = JobKind(kind)
        if idempotency:
            previous = await self.idempotency.replay(*idempotency)
            if previous is not None:
                return _submitted(previous)
        refusal = self._queue_refusal()
        mode = QUEUE if refusal is None else IN_PROCESS
        job_id = new_id()
        try:
            async with write_transaction(self.store.engine) as conn:
                if owner is not None:
                    unfinished = await self.store.unfinished(conn, owner)
                    if unfinished >= self.settings.job_max_queued_per_key:
                        raise QuotaExceededError(unfinished, self.settings.job_max_queued_per_key)
                await self.store.create(conn, job_id, kind, mode, refusal or "", self.settings.job_max_attempts,
                                        params, payloads, total, idempotency, owner)
                if idempotency and not await self.idempotency.reserve(conn, *idempotency, _accepted(job_id)):
                    raise _KeyTaken
        except _KeyTaken:
            previous = await self.idempotency.replay(*idempotency)  # type: ignore[misc]
            assert previous is not None
            return _submitted(previous)
        metrics.JOBS.labels(kind, JobStatus.queued, mode).inc()
        if mode == QUEUE:
            try:
                await self.queue.enqueue(job_id)
            except QueueUnavailableError as exc:
                await self._fall_back(job_id, str(exc), run_here)
        elif run_here:
            self.runner.submit(job_id)
        log.info("job accepted", extra={"job_id": job_id, "job_kind": kind, "mode": mode, "owner": owner})
        return Submitted(job_id, JobStatus.queued, False)

    async def _fall_back(self, job_id: str, reason: str, run_here: bool = True) -> None:
        if await self.store.switch_mode(job_id, IN_PROCESS, f"fallback: {reason}"):
            await self.store.event(job_id, "fallback", reason=reason)
            metrics.JOB_FALLBACKS.labels("redis_unreachable").inc()
            log.warning("queue unavailable; job runs in-process", extra={"job_id": job_id, "reason": reason})
            if run_here:
                self.runner.submit(job_id)

    async def get(self, job_id: str, owner: str | None = None, visibility: Visibility | None = None) -> JobView | None:
        """The job, or None if there is none (or, with `owner`, none of that owner's; with `visibility`,
        none writing to collections outside it)."""
        job = await self.store.get(job_id)
        if job is None or (owner is not None and job.owner_key_id != owner):
            return None
        view = JobView.of(job)
        return view if visibility is None or visibility.covers(view.collections) else None

    async def list(self, status: JobStatus | str | None = None, limit: int = 50, owner: str | None = None,
                   visibility: Visibility | None = None) -> list[JobView]:
        """Newest first, `limit` of them: with `visibility` the rows are read page by page until that many
        are the viewer's (or none are left), so a key bound to some collections still gets a full page."""
        found: list[JobView] = []
        offset = 0
        while len(found) < limit:
            rows = await self.store.list(status, limit, owner, offset)
            views = [JobView.of(j) for j in rows]
            found += [v for v in views if visibility is None or visibility.covers(v.collections)]
            if len(rows) < limit:
                break
            offset += limit
        return found[:limit]

    async def wait(self, job_id: str, timeout_s: float) -> JobView | None:
        """The job once it is final, or as it is when `timeout_s` has passed (None: no such job). Polls
        the row, which is the truth whichever process runs the job: often at first, then every 0.5 s."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        delay = 0.02
        while True:
            job = await self.get(job_id)
            remaining = deadline - loop.time()
            if job is None or job.status.final or remaining <= 0:
                return job
            await asyncio.sleep(min(delay, remaining))
            delay = min(delay * 2, 0.5)

    async def watch(self, job_id: str, max_s: float, poll_s: float = 0.5) -> AsyncIterator[JobView]:
        """The job now and each time its status, attempt or progress changes, until it is final or
        `max_s` has passed."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max_s
        last: tuple[Any, ...] | None = None
        while True:
            job = await self.get(job_id)
            if job is None:
                return
            seen = (job.status, job.attempts, job.progress)
            if seen != last:
                last = seen
                yield job
            remaining = deadline - loop.time()
            if job.status.final or remaining <= 0:
                return
            await asyncio.sleep(min(poll_s, remaining))

    async def cancel(self, job_id: str, *, actor: str, owner: str | None = None) -> bool:
        """Cancel a queued or running job (with `owner`, only that owner's); `actor` (an API key id, or
        `cli`) is recorded in the job's events and the log."""
        job = await self.store.get(job_id)
        cancelled = await self.store.cancel(job_id, actor, owner)
        if cancelled:
            metrics.JOBS.labels(job.kind, JobStatus.cancelled, "any").inc()
            log.info("job cancelled", extra={"job_id": job_id, "actor": actor, "job_owner": job.owner_key_id})
        return cancelled

    async def retry(self, job_id: str) -> None:
        """A failed, cancelled or dead-lettered job runs again (queue if on, else in-process); raises
        JobStateError saying why one cannot."""
        refusal = self._queue_refusal()
        mode = QUEUE if refusal is None else IN_PROCESS
        if not await self.store.requeue(job_id, mode, refusal or "retried by an operator"):
            job = await self.store.get(job_id)
            if job is None:
                raise JobStateError(f"no job {job_id}")
            if job.status in (JobStatus.failed, JobStatus.cancelled, JobStatus.dead_letter):
                raise JobStateError(f"job {job_id} is {job.status} and its input was deleted when it ended; "
                                    "submit the documents again")
            raise JobStateError(f"job {job_id} is {job.status}; only failed, cancelled or dead-lettered jobs "
                                "run again")
        if mode == QUEUE:
            try:
                await self.queue.enqueue(job_id)
            except QueueUnavailableError as exc:
                await self._fall_back(job_id, str(exc))
        else:
            self.runner.submit(job_id)

    async def migrate_pending(self) -> dict[str, list[str]]:
        """Pending queue jobs → in-process, each exactly once (a conditional update); a job that
        cannot run here (its payload is gone, or no attempts are left) is dead-lettered."""
        moved, dead = [], []
        for job in await self.store.pending_queue_jobs():
            if job.attempt >= job.max_attempts or (job.kind == JobKind.ingest and not await self.store.has_payload(job.id)):
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
