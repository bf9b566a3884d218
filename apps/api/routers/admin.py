"""Admin: API keys, request metrics shared by all workers, search cache, the operator calls of the
durable-worker rollback runbook (cleanup and graceful restart on every worker), and wiping a collection's
case memory, audited."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException, Path, Query, Response
from pydantic import BaseModel, ConfigDict

from apps.api import supervisor
from apps.api.deps import AdminKey, RuntimeDep, VisibilityDep
from apps.api.schemas import ApiKeyCreated, ApiKeyIn, ApiKeyOut
from apps.core.api_keys import KeyInfo, Scope
from apps.search.cases.memory import UnknownCollectionError

router = APIRouter(prefix="/admin", tags=["admin"])
cache_router = APIRouter(tags=["admin"])
# The runbook's paths for the two calls below (the /api/v1/admin ones are the same handlers).
runbook_router = APIRouter(prefix="/api/admin", tags=["admin"], include_in_schema=False)


def _out(k: KeyInfo) -> ApiKeyOut:
    return ApiKeyOut(id=k.id, name=k.name, scope=k.scope.name, rate_limit_per_minute=k.rate_limit_per_minute,
                     created_at=k.created_at, expires_at=k.expires_at, revoked_at=k.revoked_at, active=k.active,
                     collections=list(k.collections), groups=list(k.groups))


@router.post("/api-keys/", response_model=ApiKeyCreated, status_code=201, summary="Create an API key (shown once)")
@router.post("/api-keys", response_model=ApiKeyCreated, status_code=201, include_in_schema=False)
async def create_key(body: ApiKeyIn, runtime: RuntimeDep, _: AdminKey) -> ApiKeyCreated:
    try:
        info, plaintext = await runtime.keys.create(
            Scope[body.scope], name=body.name,
            expires_in=timedelta(days=body.expires_in_days) if body.expires_in_days else None,
            rate_limit_per_minute=body.rate_limit_per_minute, collections=body.collections, groups=body.groups,
        )
    except ValueError as exc:  # a malformed collection or group name
        raise HTTPException(422, str(exc)) from None
    return ApiKeyCreated(**_out(info).model_dump(), api_key=plaintext)


@router.get("/api-keys/", response_model=list[ApiKeyOut], summary="List API keys (never their secrets)")
@router.get("/api-keys", response_model=list[ApiKeyOut], include_in_schema=False)
async def list_keys(runtime: RuntimeDep, _: AdminKey) -> list[ApiKeyOut]:
    return [_out(k) for k in await runtime.keys.list()]


@router.delete("/api-keys/{key_id}", status_code=204, summary="Revoke an API key on every worker at once")
async def revoke_key(key_id: str, runtime: RuntimeDep, _: AdminKey) -> Response:
    if not await runtime.keys.revoke(key_id):
        raise HTTPException(404, f"no API key with id {key_id!r}")
    return Response(status_code=204)


@router.get("/metrics", summary="Requests, error rate and latency per endpoint and strategy")
async def metrics(
    runtime: RuntimeDep, _: AdminKey,
    minutes: Annotated[float, Query(gt=0, le=60 * 24, description="window in minutes, at most 1440 (24 h)")] = 60,
) -> dict[str, Any]:
    return await runtime.request_log.window(minutes)


async def _clear(runtime) -> dict[str, Any]:
    await runtime.search.clear_cache()
    return {"cleared": True}


@router.post("/cache/clear", summary="Clear the search result cache on every worker")
async def clear_cache(runtime: RuntimeDep, _: AdminKey) -> dict[str, Any]:
    return await _clear(runtime)


@cache_router.post("/admin/cache/clear", summary="Clear the search result cache (runbook path)")
async def clear_cache_root(runtime: RuntimeDep, _: AdminKey) -> dict[str, Any]:
    return await _clear(runtime)


class CleanupIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    force_gc: bool = True
    clear_caches: bool = True


@router.post("/cleanup", summary="Clear the search and analyser caches and collect garbage on every worker; "
                                 "memory of each before and after (admin, audited)")
@runbook_router.post("/cleanup")
async def cleanup(runtime: RuntimeDep, key: AdminKey,
                  body: Annotated[CleanupIn | None, Body()] = None) -> dict[str, Any]:
    body = body or CleanupIn()
    if body.clear_caches:  # shared state once: the corpus generation (every worker's keys) and Redis
        await runtime.search.clear_cache()
    parent = supervisor.supervisor_pid()
    expected = len(supervisor.workers(parent)) if parent is not None else 1
    poll = runtime.settings.cleanup_poll_s
    report = await runtime.admin.cleanup(f"api-key:{key.id}", force_gc=body.force_gc, clear_caches=body.clear_caches,
                                         expected_workers=expected, wait_s=2 * poll + 1)
    # Processes this one cannot see (other hosts, other process managers) apply it within one poll.
    return {**report, "propagation_s": poll}


@router.post("/graceful-restart", status_code=202,
             summary="Replace every serving worker in turn (settings re-read, no request dropped); needs "
                     "`dtrag serve --workers N` with N ≥ 2 (admin, audited)")
@runbook_router.post("/graceful-restart", status_code=202)
async def graceful_restart(runtime: RuntimeDep, key: AdminKey) -> dict[str, Any]:
    parent = supervisor.supervisor_pid()
    if parent is None:
        raise HTTPException(409, "this server is a single process (dtrag serve --workers 1, or uvicorn without "
                                 "--workers): nothing can serve while it restarts. Restart it with your process "
                                 "manager, or serve with --workers 2 or more")
    current = supervisor.workers(parent)
    await runtime.admin.record(f"api-key:{key.id}", "graceful-restart", {"supervisor": parent, "workers": current})
    supervisor.rolling_restart(parent)
    return {"restarting": True, "supervisor_pid": parent, "workers": current,
            "detail": "each worker is replaced in turn: its successor loads the settings and starts serving, "
                      "then it finishes its in-flight requests and exits"}


@router.get("/actions", summary="Audit trail of cleanups, their per-worker reports and graceful restarts (admin)")
async def actions(runtime: RuntimeDep, _: AdminKey,
                  limit: Annotated[int, Query(ge=1, le=500)] = 50) -> list[dict[str, Any]]:
    return await runtime.admin.history(limit)


@router.delete("/collections/{collection}/cases",
               summary="Delete every case of a collection, as `dtrag cases wipe` does (admin, audited)")
@runbook_router.delete("/collections/{collection}/cases")
async def wipe_cases(collection: Annotated[str, Path(min_length=1, max_length=64)], runtime: RuntimeDep,
                     key: AdminKey, visibility: VisibilityDep) -> dict[str, Any]:
    # An admin key bound to collections wipes only those (another looks like one that does not exist).
    if not visibility.may_use(collection):
        raise HTTPException(404, f"no collection named {collection!r}")
    try:
        wiped = await runtime.cases.wipe(collection)
    except UnknownCollectionError:
        raise HTTPException(404, f"no collection named {collection!r}") from None
    action = await runtime.admin.record(f"api-key:{key.id}", "cases-wipe", {"collection": collection, "wiped": wiped})
    return {"collection": collection, "wiped": wiped, "action_id": action}
