"""The job rows. Every state change is one conditional UPDATE, so concurrent workers, sweeps and
operators never both win: a claim succeeds only on a queued row or a running row whose lease expired,
and heartbeats, progress and the final commit succeed only while the attempt still owns the row
(same attempt number, same owner, still running). An orphaned attempt's late write changes nothing."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import mmh3
from sqlalchemy import and_, delete, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from apps.core.db import write_transaction
from apps.core.models import Job, JobEvent, JobPayload, utcnow
from apps.jobs.types import UNFINISHED, ErrorKind, JobKind, JobMode, JobStatus, aware

QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED, DEAD_LETTER = JobStatus
QUEUE, IN_PROCESS = JobMode


class StaleAttemptError(RuntimeError):
    """This attempt no longer owns its job (its lease expired and another attempt claimed it, or the
    job was cancelled): its writes are refused."""


@dataclass(frozen=True)
class Claim:
    job_id: str
    attempt: int
    owner: str
    recovered: bool  # the previous attempt's lease had expired: it crashed or hung


@dataclass(frozen=True)
class Payload:
    filename: str | None
    fields: dict[str, Any]
    data: bytes | None


class JobStore:
    def __init__(self, engine: AsyncEngine, lease_s: float) -> None:
        self.engine = engine
        self._lease = timedelta(seconds=lease_s)

    # --- creating ----------------------------------------------------------------------------------

    async def create(self, conn: AsyncConnection, job_id: str, kind: str, mode: str, mode_reason: str,
                     max_attempts: int, params: dict[str, Any] | None = None,
                     payloads: Sequence[Payload] = (), total: int = 0,
                     idempotency: tuple[str, str, str] | None = None, owner: str | None = None) -> None:
        """Insert the job and its payload in the caller's transaction (the request's bytes are durable
        before it answers)."""
        now = utcnow()
        scope, key, request_hash = idempotency or (None, None, None)
        await conn.execute(insert(Job).values(
            id=job_id, kind=kind, status=QUEUED, mode=mode, mode_reason=mode_reason, params=params or {},
            attempt=0, max_attempts=max_attempts, progress_done=0, progress_total=total, progress_chunks=0,
            idempotency_scope=scope, idempotency_key=key, request_hash=request_hash, owner_key_id=owner,
            created_at=now, updated_at=now))
        if payloads:
            await conn.execute(insert(JobPayload), [
                {"job_id": job_id, "ordinal": i, "filename": p.filename, "fields": p.fields, "data": p.data}
                for i, p in enumerate(payloads)])

    @staticmethod
    async def unfinished(conn: AsyncConnection, owner: str) -> int:
        """The owner's queued and running jobs, counted so that a job created in the same transaction
        cannot race another: SQLite's write transaction already holds the database's write lock, and on
        PostgreSQL a transaction-scoped advisory lock per owner serialises its submissions."""
        if conn.dialect.name == "postgresql":
            await conn.execute(select(func.pg_advisory_xact_lock(mmh3.hash64(f"jobs:{owner}")[0])))
        return int((await conn.execute(select(func.count()).select_from(Job).where(
            Job.owner_key_id == owner, Job.status.in_(UNFINISHED)))).scalar_one())

    async def event(self, job_id: str, event: str, conn: AsyncConnection | None = None, **detail: Any) -> None:
        statement = insert(JobEvent).values(job_id=job_id, at=utcnow(), event=event, detail=detail)
        if conn is not None:
            await conn.execute(statement)
            return
        async with write_transaction(self.engine) as own:
            await own.execute(statement)

    # --- reading -----------------------------------------------------------------------------------

    async def get(self, job_id: str) -> Any | None:
        async with self.engine.connect() as conn:
            return (await conn.execute(select(Job).where(Job.id == job_id))).first()

    async def list(self, status: str | None = None, limit: int = 50, owner: str | None = None,
                   offset: int = 0) -> list[Any]:
        """Newest first; `owner` keeps only that key's jobs."""
        query = select(Job).order_by(Job.created_at.desc(), Job.id).offset(offset).limit(limit)
        if status:
            query = query.where(Job.status == status)
        if owner is not None:
            query = query.where(Job.owner_key_id == owner)
        async with self.engine.connect() as conn:
            return list((await conn.execute(query)).all())

    async def payloads(self, job_id: str) -> list[Payload]:
        async with self.engine.connect() as conn:
            rows = (await conn.execute(select(JobPayload).where(JobPayload.job_id == job_id)
                                       .order_by(JobPayload.ordinal))).all()
        return [Payload(r.filename, r.fields or {}, r.data) for r in rows]

    async def has_payload(self, job_id: str) -> bool:
        async with self.engine.connect() as conn:
            return bool((await conn.execute(select(func.count()).select_from(JobPayload)
                                            .where(JobPayload.job_id == job_id))).scalar_one())

    async def counts(self) -> dict[str, int]:
        async with self.engine.connect() as conn:
            rows = (await conn.execute(select(Job.status, func.count()).group_by(Job.status))).all()
        return {s.value: 0 for s in JobStatus} | {r[0]: int(r[1]) for r in rows}

    async def queue_depth(self, now: datetime | None = None) -> tuple[int, float | None]:
        """Queued queue-mode jobs and the age in seconds of the oldest."""
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(func.count(), func.min(Job.created_at))
                                      .where(Job.status == QUEUED, Job.mode == QUEUE))).one()
        oldest = aware(row[1])
        return int(row[0]), (((now or utcnow()) - oldest).total_seconds() if oldest else None)

    async def crashes_since(self, since: datetime) -> int:
        async with self.engine.connect() as conn:
            return int((await conn.execute(select(func.count()).select_from(JobEvent).where(
                JobEvent.event == "crash", JobEvent.at >= since))).scalar_one())

    async def recoverable(self, mode: str, limit: int = 100) -> list[Any]:
        """Jobs of `mode` a sweep should (re)start: queued and due, or running with an expired lease
        (rows of id, status, updated_at)."""
        now = utcnow()
        async with self.engine.connect() as conn:
            return list((await conn.execute(select(Job.id, Job.status, Job.updated_at)
                                            .where(Job.mode == mode, self._claimable(now))
                                            .order_by(Job.created_at).limit(limit))).all())

    async def due_for_resend(self) -> list[str]:
        """Queue-mode jobs whose message may be lost: queued and not (re)sent for a lease, or running
        with an expired lease (the worker died)."""
        stale = utcnow() - self._lease
        return [job.id for job in await self.recoverable(QUEUE)
                if job.status != QUEUED or aware(job.updated_at) <= stale]

    async def touch(self, job_id: str) -> None:
        """Mark a queued job as just (re)sent, so the sweep waits a lease before sending it again."""
        async with write_transaction(self.engine) as conn:
            await conn.execute(update(Job).where(Job.id == job_id, Job.status == QUEUED).values(updated_at=utcnow()))

    # --- one attempt -------------------------------------------------------------------------------

    @staticmethod
    def _claimable(now: datetime):
        due = or_(Job.run_after.is_(None), Job.run_after <= now)
        return or_(and_(Job.status == QUEUED, due), and_(Job.status == RUNNING, Job.lease_expires_at < now))

    def _owned(self, claim: Claim):
        return and_(Job.id == claim.job_id, Job.attempt == claim.attempt, Job.lease_owner == claim.owner,
                    Job.status == RUNNING)

    @staticmethod
    async def _drop_payloads(conn: AsyncConnection, job_id: str) -> None:
        """A job that has ended no longer needs its input (a retry of an ingest job needs it submitted again)."""
        await conn.execute(delete(JobPayload).where(JobPayload.job_id == job_id))

    async def claim(self, job_id: str, owner: str, mode: str) -> Claim | None:
        """Take the job for a new attempt, or None (someone else holds it, it is finished, not yet due,
        or it belongs to the other mode)."""
        now = utcnow()
        async with write_transaction(self.engine) as conn:
            row = (await conn.execute(select(Job.status, Job.attempt, Job.max_attempts, Job.lease_owner,
                                             Job.started_at)
                                      .where(Job.id == job_id, Job.mode == mode, self._claimable(now)))).first()
            if row is None:
                return None
            if row.status == RUNNING and row.attempt >= row.max_attempts:
                # Its last allowed attempt died holding it: fail it rather than run an attempt past the limit.
                abandoned = (await conn.execute(
                    update(Job).where(Job.id == job_id, Job.attempt == row.attempt, self._claimable(now))
                    .values(status=FAILED, error=f"abandoned: attempt {row.attempt} of {row.max_attempts} "
                                                 "stopped heartbeating", error_kind=ErrorKind.abandoned,
                            lease_owner=None, finished_at=now, updated_at=now))).rowcount
                if abandoned:
                    await self._drop_payloads(conn, job_id)
                    await self.event(job_id, "crash", conn, attempt=row.attempt, owner=row.lease_owner)
                return None
            claimed = (await conn.execute(
                update(Job).where(Job.id == job_id, Job.attempt == row.attempt, Job.mode == mode,
                                  self._claimable(now))
                .values(status=RUNNING, attempt=row.attempt + 1, lease_owner=owner,
                        lease_expires_at=now + self._lease, heartbeat_at=now, run_after=None,
                        started_at=row.started_at or now, updated_at=now))).rowcount
            if not claimed:
                return None
            recovered = row.status == RUNNING
            if recovered:
                await self.event(job_id, "crash", conn, attempt=row.attempt, owner=row.lease_owner)
        return Claim(job_id, row.attempt + 1, owner, recovered)

    async def heartbeat(self, claim: Claim, done: int | None = None, total: int | None = None,
                        chunks: int | None = None) -> bool:
        """Renew the lease (and record progress); False when the attempt no longer owns the job."""
        now = utcnow()
        values: dict[str, Any] = {"lease_expires_at": now + self._lease, "heartbeat_at": now, "updated_at": now}
        for column, value in (("progress_done", done), ("progress_total", total), ("progress_chunks", chunks)):
            if value is not None:
                values[column] = value
        async with write_transaction(self.engine) as conn:
            return bool((await conn.execute(update(Job).where(self._owned(claim)).values(**values))).rowcount)

    async def succeed(self, claim: Claim, result: dict[str, Any]) -> None:
        await self._finish(claim, SUCCEEDED, result=result, error=None, error_kind=None)

    async def fail(self, claim: Claim, error: str, kind: ErrorKind) -> None:
        await self._finish(claim, FAILED, error=error, error_kind=kind)

    async def _finish(self, claim: Claim, status: JobStatus, **values: Any) -> None:
        now = utcnow()
        async with write_transaction(self.engine) as conn:
            done = (await conn.execute(update(Job).where(self._owned(claim)).values(
                status=status, finished_at=now, updated_at=now, lease_owner=None, lease_expires_at=None,
                **values))).rowcount
            if done:
                await self._drop_payloads(conn, claim.job_id)
        if not done:
            raise StaleAttemptError(f"job {claim.job_id} attempt {claim.attempt} no longer owns the job")

    async def release_for_retry(self, claim: Claim, error: str, delay_s: float) -> None:
        """Back to queued, due after the backoff (a sweep picks it up if this process dies meanwhile)."""
        now = utcnow()
        async with write_transaction(self.engine) as conn:
            released = (await conn.execute(update(Job).where(self._owned(claim)).values(
                status=QUEUED, error=error, lease_owner=None, lease_expires_at=None,
                run_after=now + timedelta(seconds=delay_s), updated_at=now))).rowcount
        if not released:
            raise StaleAttemptError(f"job {claim.job_id} attempt {claim.attempt} no longer owns the job")

    # --- operators ---------------------------------------------------------------------------------

    async def cancel(self, job_id: str, actor: str | None, owner: str | None = None) -> bool:
        """Queued or running → cancelled (only `owner`'s job when given), its input deleted and the
        cancel recorded with who asked; a running attempt sees it at its next heartbeat and stops."""
        now = utcnow()
        condition = [Job.id == job_id, Job.status.in_(UNFINISHED)]
        if owner is not None:
            condition.append(Job.owner_key_id == owner)
        async with write_transaction(self.engine) as conn:
            cancelled = bool((await conn.execute(update(Job).where(*condition).values(
                status=CANCELLED, finished_at=now, updated_at=now, lease_owner=None,
                lease_expires_at=None))).rowcount)
            if cancelled:
                await self._drop_payloads(conn, job_id)
                await self.event(job_id, "cancelled", conn, actor=actor)
        return cancelled

    async def requeue(self, job_id: str, mode: str, reason: str) -> bool:
        """A failed, cancelled or dead-lettered job → queued again with a fresh attempt budget; an ingest
        job only while its input is still stored."""
        now = utcnow()
        has_input = select(JobPayload.job_id).where(JobPayload.job_id == Job.id).exists()
        async with write_transaction(self.engine) as conn:
            return bool((await conn.execute(update(Job).where(
                Job.id == job_id, Job.status.in_((FAILED, CANCELLED, DEAD_LETTER)),
                or_(Job.kind != JobKind.ingest, has_input)).values(
                status=QUEUED, mode=mode, mode_reason=reason, max_attempts=Job.attempt + Job.max_attempts,
                error=None, error_kind=None, finished_at=None, run_after=None, updated_at=now))).rowcount)

    async def switch_mode(self, job_id: str, to_mode: str, reason: str, from_statuses: Sequence[str] = (QUEUED,),
                          expired_only: bool = False) -> bool:
        """Move a not-yet-running (or abandoned) job to the other executor, exactly once."""
        now = utcnow()
        condition = [Job.id == job_id, Job.mode != to_mode, Job.status.in_(tuple(from_statuses))]
        if expired_only:
            condition.append(or_(Job.status == QUEUED, Job.lease_expires_at < now))
        async with write_transaction(self.engine) as conn:
            moved = (await conn.execute(update(Job).where(*condition).values(
                mode=to_mode, mode_reason=reason, updated_at=now))).rowcount
            if moved:
                await self.event(job_id, "moved", conn, to=to_mode, reason=reason)
        return bool(moved)

    async def pending_queue_jobs(self) -> list[Any]:
        async with self.engine.connect() as conn:
            return list((await conn.execute(select(Job.id, Job.kind, Job.attempt, Job.max_attempts).where(
                Job.mode == QUEUE, Job.status == QUEUED).order_by(Job.created_at))).all())

    async def dead_letter(self, job_id: str, reason: str) -> bool:
        now = utcnow()
        async with write_transaction(self.engine) as conn:
            done = (await conn.execute(update(Job).where(Job.id == job_id, Job.status == QUEUED).values(
                status=DEAD_LETTER, error=reason, finished_at=now, updated_at=now))).rowcount
            if done:
                await self._drop_payloads(conn, job_id)
                await self.event(job_id, "dead_letter", conn, reason=reason)
        return bool(done)
