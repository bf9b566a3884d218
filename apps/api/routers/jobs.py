"""Jobs: status, list, cancel, progress as Server-Sent Events; admin: migrate pending queue jobs to
in-process execution, and worker statistics. The logic is in `apps.jobs.service`."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import StreamingResponse

from apps.api.deps import AdminKey, ReadKey, RuntimeDep, WriteKey
from apps.jobs.store import STATUSES, TERMINAL

router = APIRouter(prefix="/jobs", tags=["jobs"])
admin_router = APIRouter(tags=["admin"])
_POLL_S = 0.5


async def _job(runtime: Any, job_id: str) -> dict[str, Any]:
    job = await runtime.jobs.get(job_id)
    if job is None:
        raise HTTPException(404, f"no job with id {job_id!r}")
    return job


@router.get("", summary="List jobs, newest first")
async def list_jobs(runtime: RuntimeDep, _: ReadKey,
                    status: Annotated[str | None, Query(pattern=f"^({'|'.join(STATUSES)})$")] = None,
                    limit: Annotated[int, Query(ge=1, le=500)] = 50) -> list[dict[str, Any]]:
    return await runtime.jobs.list(status, limit)


@router.get("/{job_id}", summary="A job: status, progress, result, error, attempts, mode")
async def get_job(job_id: str, runtime: RuntimeDep, _: ReadKey) -> dict[str, Any]:
    return await _job(runtime, job_id)


@router.post("/{job_id}/cancel", summary="Cancel a queued or running job")
async def cancel_job(job_id: str, runtime: RuntimeDep, _: WriteKey) -> dict[str, Any]:
    job = await _job(runtime, job_id)
    if not await runtime.jobs.cancel(job_id):
        raise HTTPException(409, f"job {job_id} is {job['status']}; only queued or running jobs can be cancelled")
    return await _job(runtime, job_id)


def _sse(event: str, data: Any) -> str:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


@router.get("/{job_id}/events", summary="Progress as Server-Sent Events until the job is final",
            responses={200: {"content": {"text/event-stream": {}}}})
async def job_events(job_id: str, runtime: RuntimeDep, _: ReadKey) -> StreamingResponse:
    await _job(runtime, job_id)

    async def stream() -> AsyncIterator[str]:
        last: tuple | None = None
        while True:
            job = await runtime.jobs.get(job_id)
            seen = (job["status"], job["attempts"], tuple(job["progress"].values()))
            if seen != last:
                last = seen
                yield _sse("progress", job)
            if job["status"] in TERMINAL:
                yield _sse("done", job)
                return
            await asyncio.sleep(_POLL_S)

    return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


@admin_router.post("/api/admin/migrate-pending-jobs", summary="Move pending queue jobs to in-process execution")
@admin_router.post("/api/v1/admin/migrate-pending-jobs", include_in_schema=False)
async def migrate_pending_jobs(runtime: RuntimeDep, _: AdminKey) -> dict[str, Any]:
    result = await runtime.jobs.migrate_pending()
    return {**result, "moved_count": len(result["moved"]), "dead_lettered_count": len(result["dead_lettered"])}


@admin_router.get("/api/admin/stats", summary="In-process tasks, queue depth, workers, jobs by status")
@admin_router.get("/api/v1/admin/stats", include_in_schema=False)
async def stats(runtime: RuntimeDep, _: AdminKey) -> dict[str, Any]:
    return await runtime.jobs.stats()
