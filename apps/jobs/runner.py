"""In-process execution (the embedded default, and the fallback when Redis is away): the same
executor on this event loop, at most JOB_CONCURRENCY jobs at once (embedding and chunking already run
on worker threads, so the loop keeps serving requests). The sweep, at start and every half lease,
resumes queued jobs and running jobs whose lease expired, so kill -9 of the server loses nothing; it
also re-sends queue-mode jobs whose message may be lost and, when the queue is unusable, moves them
here with the reason recorded."""

from __future__ import annotations

import asyncio
import logging

from apps.core import metrics
from apps.core.config import Settings
from apps.core.periodic import Periodic
from apps.jobs.executor import JobExecutor
from apps.jobs.queue import JobQueue, QueueUnavailableError
from apps.jobs.store import IN_PROCESS, QUEUED, RUNNING, JobStore

log = logging.getLogger(__name__)


class InProcessRunner:
    def __init__(self, executor: JobExecutor, store: JobStore, queue: JobQueue, settings: Settings) -> None:
        self._executor = executor
        self._store = store
        self._queue = queue
        self._settings = settings
        self._slots = asyncio.Semaphore(settings.job_concurrency)
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._running = 0
        self._sweeper = Periodic("jobs-sweep", max(settings.job_lease_s / 2, 0.5), self.sweep)

    @property
    def active(self) -> int:
        """Jobs executing now in this process (the runbook's `background_tasks.active`)."""
        return self._running

    @property
    def pending(self) -> int:
        return len(self._tasks) - self._running

    def submit(self, job_id: str) -> None:
        if job_id not in self._tasks:
            self._tasks[job_id] = asyncio.create_task(self._run(job_id), name=f"job-{job_id}")

    async def _run(self, job_id: str) -> None:
        try:
            async with self._slots:
                self._running += 1
                try:
                    await self._executor.execute(job_id, IN_PROCESS)
                finally:
                    self._running -= 1
        except Exception:
            log.exception("in-process job crashed; the sweep retries it when its lease expires",
                          extra={"job_id": job_id})
        finally:
            self._tasks.pop(job_id, None)

    async def wait(self, job_id: str) -> None:
        task = self._tasks.get(job_id)
        if task is not None:
            await asyncio.shield(task)

    async def sweep(self) -> int:
        """Start what should be running; returns how many jobs it started or re-sent."""
        started = 0
        for job in await self._store.recoverable(IN_PROCESS):
            if job.id not in self._tasks:
                self.submit(job.id)
                started += 1
        for job_id in await self._store.due_for_resend():
            if await self.resend(job_id):
                started += 1
        return started

    async def resend(self, job_id: str) -> bool:
        """Put a queue-mode job back on the queue, or run it here when the queue cannot take it."""
        reason = self._queue_unusable()
        if reason is None:
            try:
                await self._queue.enqueue(job_id)
                await self._store.touch(job_id)
                return True
            except QueueUnavailableError as exc:
                reason = str(exc)
        if await self._store.switch_mode(job_id, IN_PROCESS, f"fallback: {reason}", from_statuses=(QUEUED, RUNNING),
                                         expired_only=True):
            metrics.JOB_FALLBACKS.labels("recovery").inc()
            self.submit(job_id)
            return True
        return False

    def _queue_unusable(self) -> str | None:
        if not self._queue.configured:
            return "REDIS_URL is not set"
        if not self._settings.worker_system_enabled:
            return "WORKER_SYSTEM_ENABLED is false"
        return None

    def start(self) -> None:
        self._sweeper.start()
        self._first = asyncio.create_task(self._first_sweep(), name="jobs-first-sweep")

    async def _first_sweep(self) -> None:
        try:
            resumed = await self.sweep()
            if resumed:
                log.info("jobs resumed at startup", extra={"jobs_resumed": resumed})
        except Exception:
            log.exception("startup job sweep failed; the periodic sweep retries")

    async def close(self) -> None:
        """Stop; interrupted jobs keep their rows (running, lease ticking) and resume on the next start."""
        self._sweeper.stop()
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
