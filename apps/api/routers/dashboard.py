"""GET /dashboard (an HTML shell without data, so it needs no key) and the admin JSON views it polls."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import FileResponse, HTMLResponse

from apps.api.dashboard import views
from apps.api.deps import AdminKey, RuntimeDep, VisibilityDep

router = APIRouter(tags=["dashboard"])
admin = "/api/v1/admin/dashboard"
DAY_MINUTES = 60 * 24
MAX_BUCKETS = 1440  # a chart point per pixel column is plenty


@router.get("/dashboard", response_class=HTMLResponse, include_in_schema=False)
async def dashboard() -> HTMLResponse:
    return HTMLResponse(views.page())


@router.get("/dashboard/static/{name}", include_in_schema=False)
async def asset(name: str) -> FileResponse:
    if name not in views.ASSETS:
        raise HTTPException(404, f"no dashboard asset {name!r}")
    return FileResponse(views.STATIC / name, media_type=views.ASSETS[name])


@router.get(f"{admin}/timeseries", summary="Per-variant request rate, error rate and latency percentiles per "
                                          "time bucket on the canary's routes (admin)")
async def timeseries(runtime: RuntimeDep, _: AdminKey,
                     minutes: Annotated[float, Query(gt=0, le=DAY_MINUTES, description="at most 1440 (24 h)")] = 60,
                     bucket_s: Annotated[int, Query(ge=1, le=3600)] = 60) -> dict[str, Any]:
    if minutes * 60 / bucket_s > MAX_BUCKETS:
        raise HTTPException(422, f"{minutes:g} minutes in {bucket_s} s buckets is over {MAX_BUCKETS} buckets: "
                                 "raise bucket_s")
    return await views.timeseries(runtime, minutes, bucket_s)


@router.get(f"{admin}/canary", summary="Canary controller state, recent verdicts, SLAs, its rollbacks (admin)")
async def canary(runtime: RuntimeDep, _: AdminKey,
                 limit: Annotated[int, Query(ge=1, le=500)] = 20) -> dict[str, Any]:
    return await views.canary(runtime, limit)


@router.get(f"{admin}/learning", summary="Q-table with visits and greedy choices, replay fill, recent decisions, "
                                       "off-policy estimate of the greedy policy (admin)")
async def learning(runtime: RuntimeDep, _: AdminKey,
                   decisions: Annotated[int, Query(ge=1, le=500)] = 20) -> dict[str, Any]:
    return await views.learning(runtime, decisions)


@router.get(f"{admin}/llm", summary="Configured answer provider and its recent calls (admin)")
async def llm(runtime: RuntimeDep, _: AdminKey,
              minutes: Annotated[float, Query(gt=0, le=DAY_MINUTES)] = 60) -> dict[str, Any]:
    return await views.llm(runtime, minutes)


@router.get(f"{admin}/collections", summary="Collections with document and chunk counts and the keys that use "
                                          "them (admin)")
async def collections(runtime: RuntimeDep, _: AdminKey, visibility: VisibilityDep) -> dict[str, Any]:
    return await views.collections(runtime, visibility)
