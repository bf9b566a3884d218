"""Jobs: status, list, cancel, progress as Server-Sent Events; admin: migrate pending queue jobs to
in-process execution, and worker statistics. The logic is in `apps.jobs.service`.

A key sees and cancels only the jobs it submitted; an admin key sees and cancels every job of the
collections it may use (a job belongs to the collections it writes to; a reindex or learning job to the
whole corpus, so only to admins of every collection). Another key's job is a 404, as if it did not exist."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query
from fastapi.sse import EventSourceResponse, ServerSentEvent

from apps.api.deps import AdminKey, ReadKey, RuntimeDep, VisibilityDep, WriteKey
from apps.core.api_keys import KeyInfo, Scope
from apps.jobs.types import JobStatus, JobView

router = APIRouter(prefix="/jobs", tags=["jobs"])
admin_router = APIRouter(tags=["admin"])


def _owner(key: KeyInfo) -> str | None:
    """Whose jobs a key may see: its own, or (None) everyone's for an admin key."""
    return None if key.scope >= Scope.admin else key.id


async def _visible(runtime: RuntimeDep, key: ReadKey, visibility: VisibilityDep, job_id: str) -> JobView:
    # A job belongs to the collections it writes to (a reindex or learning job to the whole corpus).
    job = await runtime.jobs.get(job_id, owner=_owner(key), visibility=visibility)
    if job is None:
        raise HTTPException(404, f"no job with id {job_id!r}")
    return job


VisibleJob = Annotated[JobView, Depends(_visible)]


@router.get("", response_model=list[JobView], summary="List jobs, newest first (an admin key: every key's)")
async def list_jobs(runtime: RuntimeDep, key: ReadKey, visibility: VisibilityDep, status: JobStatus | None = None,
                    limit: Annotated[int, Query(ge=1, le=500)] = 50) -> list[JobView]:
    return await runtime.jobs.list(status, limit, owner=_owner(key), visibility=visibility)


@router.get("/{job_id}", response_model=JobView, summary="A job: status, progress, result, error, attempts, mode")
async def get_job(job: VisibleJob) -> JobView:
    return job


@router.post("/{job_id}/cancel", response_model=JobView, summary="Cancel a queued or running job")
async def cancel_job(job_id: str, runtime: RuntimeDep, key: WriteKey, visibility: VisibilityDep) -> JobView:
    # The write key alone: a second key dependency would verify it (and count its rate limit) twice.
    await _visible(runtime, key, visibility, job_id)
    if not await runtime.jobs.cancel(job_id, actor=key.id, owner=_owner(key)):
        job = await _visible(runtime, key, visibility, job_id)
        raise HTTPException(409, f"job {job_id} is {job.status}; only queued or running jobs can be cancelled")
    return await _visible(runtime, key, visibility, job_id)


@router.get("/{job_id}/events", response_class=EventSourceResponse,
            summary="Progress as Server-Sent Events until the job is final (or JOB_EVENTS_MAX_S has passed)",
            description="`progress` events with the job as it changes, then `done` with the final job; a stream "
                        "open JOB_EVENTS_MAX_S ends with `timeout` instead (reconnect to go on watching).")
async def job_events(job: VisibleJob, runtime: RuntimeDep) -> AsyncIterator[ServerSentEvent]:
    last = job
    async for last in runtime.jobs.watch(job.job_id, runtime.settings.job_events_max_s):
        yield ServerSentEvent(event="progress", data=last)
    yield ServerSentEvent(event="done" if last.status.final else "timeout", data=last)


@admin_router.post("/api/admin/migrate-pending-jobs", summary="Move pending queue jobs to in-process execution")
@admin_router.post("/api/v1/admin/migrate-pending-jobs", include_in_schema=False)
async def migrate_pending_jobs(runtime: RuntimeDep, _: AdminKey) -> dict[str, Any]:
    result = await runtime.jobs.migrate_pending()
    return {**result, "moved_count": len(result["moved"]), "dead_lettered_count": len(result["dead_lettered"])}


@admin_router.get("/api/admin/stats", summary="In-process tasks, queue depth, workers, jobs by status")
@admin_router.get("/api/v1/admin/stats", include_in_schema=False)
async def stats(runtime: RuntimeDep, _: AdminKey) -> dict[str, Any]:
    return await runtime.jobs.stats()
