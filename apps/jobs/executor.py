"""One job's attempts, the same under an RQ worker and the in-process runner: claim the row, run the
kind with a heartbeat that renews the lease and records progress, under the job timeout, and commit
while still the owner. A transient failure releases the row for a retry after an exponential
backoff (due time stored in the row, so a sweep finds it if this process dies while waiting); an
error a retry cannot fix, or the last attempt's, fails the job with its error."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from typing import Literal

from apps.core import metrics
from apps.core.config import Settings
from apps.core.models import new_id
from apps.jobs.kinds import JobKinds, permanent_error
from apps.jobs.store import Claim, JobStore, StaleAttemptError
from apps.jobs.types import ErrorKind, JobStatus, aware

log = logging.getLogger(__name__)
Outcome = JobStatus | Literal["retry"] | None  # of one attempt: final, released for another, or not ours


def owner_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{new_id()[:8]}"


class LeaseLostError(RuntimeError):
    """The heartbeat found the job no longer ours (cancelled, or reclaimed after our lease expired)."""


class JobExecutor:
    def __init__(self, store: JobStore, kinds: JobKinds, settings: Settings) -> None:
        self.store = store
        self.kinds = kinds
        self.settings = settings

    async def execute(self, job_id: str, mode: str) -> JobStatus | None:
        """Run the job to a final status if it can be claimed; returns that status, or None when the
        job was not ours to run (finished, held by a live attempt, another mode, not yet due)."""
        while True:
            claim = await self.store.claim(job_id, owner_id(), mode)
            if claim is None:
                return None
            outcome = await self._attempt(claim, mode)
            if outcome != "retry":
                return outcome
            # Exponential backoff; the row says when it is due, so waiting here is only an optimisation.
            await asyncio.sleep(self.settings.job_retry_backoff_s * 2 ** (claim.attempt - 1))

    async def _attempt(self, claim: Claim, mode: str) -> Outcome:
        job = await self.store.get(claim.job_id)
        assert job is not None
        if claim.attempt == 1:
            metrics.JOB_QUEUE_LATENCY.labels(job.kind, mode).observe(
                max(0.0, (aware(job.started_at) - aware(job.created_at)).total_seconds()))
        log.info("job attempt started", extra={"job_id": job.id, "job_kind": job.kind, "attempt": claim.attempt,
                                               "mode": mode, "recovered": claim.recovered})
        progress: list[int | None] = [None, None, None]

        def on_progress(done: int, total: int, chunks: int) -> None:
            progress[:] = [done, total, chunks]

        start = time.perf_counter()
        work = asyncio.create_task(self.kinds.run(job.kind, job.params or {},
                                                  lambda: self.store.payloads(job.id), on_progress))
        beat = asyncio.create_task(self._heartbeat(claim, work, progress))
        try:
            async with asyncio.timeout(self.settings.job_timeout_s):
                result = await work
        except asyncio.CancelledError:
            if beat.done() and isinstance(beat.exception(), LeaseLostError):
                log.warning("job attempt lost its lease; stopped", extra={"job_id": job.id, "attempt": claim.attempt})
                return None
            raise
        except Exception as exc:
            return await self._failed(claim, job.kind, mode, exc)
        finally:
            beat.cancel()
            with contextlib.suppress(asyncio.CancelledError, LeaseLostError):
                await beat
            metrics.JOB_DURATION.labels(job.kind, mode).observe(time.perf_counter() - start)
        try:
            await self.store.heartbeat(claim, *progress)
            await self.store.succeed(claim, result)
        except StaleAttemptError:
            log.warning("late commit of an orphaned attempt rejected", extra={"job_id": job.id, "attempt": claim.attempt})
            return None
        metrics.JOBS.labels(job.kind, JobStatus.succeeded, mode).inc()
        log.info("job succeeded", extra={"job_id": job.id, "attempt": claim.attempt, "mode": mode})
        return JobStatus.succeeded

    async def _failed(self, claim: Claim, kind: str, mode: str, exc: Exception) -> Outcome:
        permanent, detail = permanent_error(exc), str(exc)
        # A permanent error's message is written for the user ("a.pdf: not a readable PDF"); for another
        # the exception's type is half of what an operator needs.
        if not (permanent and detail):
            detail = f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__
        error = detail
        try:
            if permanent or claim.attempt >= (await self._max_attempts(claim)):
                await self.store.fail(claim, error, permanent or ErrorKind.exhausted)
                metrics.JOBS.labels(kind, JobStatus.failed, mode).inc()
                log.error("job failed", extra={"job_id": claim.job_id, "attempt": claim.attempt, "error": error})
                return JobStatus.failed
            delay = self.settings.job_retry_backoff_s * 2 ** (claim.attempt - 1)
            await self.store.release_for_retry(claim, error, delay)
        except StaleAttemptError:
            return None
        log.warning("job attempt failed; retrying", extra={"job_id": claim.job_id, "attempt": claim.attempt,
                                                            "error": error})
        return "retry"

    async def _max_attempts(self, claim: Claim) -> int:
        job = await self.store.get(claim.job_id)
        return job.max_attempts if job is not None else claim.attempt

    async def _heartbeat(self, claim: Claim, work: asyncio.Task, progress: list[int | None]) -> None:
        while True:
            await asyncio.sleep(self.settings.job_heartbeat_s)
            try:
                owned = await self.store.heartbeat(claim, *progress)
            except Exception:  # a database blip: the lease has slack for the next beat
                log.exception("job heartbeat failed", extra={"job_id": claim.job_id})
                continue
            if not owned:
                work.cancel()
                raise LeaseLostError(claim.job_id)
