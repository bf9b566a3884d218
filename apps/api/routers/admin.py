"""Admin: API keys, request metrics shared by all workers, search cache."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Response

from apps.api.deps import AdminKey, RuntimeDep
from apps.api.schemas import ApiKeyCreated, ApiKeyIn, ApiKeyOut
from apps.core.api_keys import KeyInfo, Scope

router = APIRouter(prefix="/admin", tags=["admin"])
cache_router = APIRouter(tags=["admin"])


def _out(k: KeyInfo) -> ApiKeyOut:
    return ApiKeyOut(id=k.id, name=k.name, scope=k.scope.name, rate_limit_per_minute=k.rate_limit_per_minute,
                     created_at=k.created_at, expires_at=k.expires_at, revoked_at=k.revoked_at, active=k.active)


@router.post("/api-keys/", response_model=ApiKeyCreated, status_code=201, summary="Create an API key (shown once)")
@router.post("/api-keys", response_model=ApiKeyCreated, status_code=201, include_in_schema=False)
async def create_key(body: ApiKeyIn, runtime: RuntimeDep, _: AdminKey) -> ApiKeyCreated:
    info, plaintext = await runtime.keys.create(
        Scope[body.scope], name=body.name,
        expires_in=timedelta(days=body.expires_in_days) if body.expires_in_days else None,
        rate_limit_per_minute=body.rate_limit_per_minute,
    )
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
