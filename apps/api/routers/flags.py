"""Feature flags as the runbooks call them: list, check a context, reload; audited admin writes."""

from __future__ import annotations

import os
import socket
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request

from apps.api.deps import AdminKey, RuntimeDep
from apps.api.schemas import FlagUpdateIn
from apps.core.flags import FLAGS, FlagConfigError
from apps.rollout.flags import FlagConfig, FlagContext, UnknownFlagError

_WORKER = f"{socket.gethostname()}:{os.getpid()}"  # shows which worker answered (propagation checks)
router = APIRouter(prefix="/feature-flags", tags=["feature flags"])
admin_router = APIRouter(prefix="/admin/feature-flags", tags=["feature flags"])


def _public(config: FlagConfig, last_change: dict[str, Any] | None) -> dict[str, Any]:
    return {
        **config.view(),
        "description": FLAGS[config.name].description, "owner": FLAGS[config.name].owner,
        "last_change": last_change,
    }


@router.get("", summary="Every flag: state, source, rollout, allowlist size, last change; canary state")
async def list_flags(runtime: RuntimeDep) -> dict[str, Any]:
    flags = runtime.flags
    changes = await flags.last_changes()
    return {"flags": {name: _public(c, changes.get(name)) for name, c in flags.configs().items()},
            "canary": await runtime.canary.status(), "served_by": _WORKER}


@router.get("/check", summary="Which flags are on for a context, its bucket and pipeline variant")
async def check(
    runtime: RuntimeDep,
    user_id: Annotated[str | None, Query(max_length=200)] = None,
    job_id: Annotated[str | None, Query(max_length=200)] = None,
) -> dict[str, Any]:
    if not user_id and not job_id:
        raise HTTPException(422, "give user_id or job_id: a sticky bucket needs one of them")
    flags = runtime.flags
    context = FlagContext(user_id=user_id, job_id=job_id)
    assignment = flags.assign(context)
    return {
        "user_id": user_id, "job_id": job_id, "bucket": assignment.bucket,
        "pipeline_variant": assignment.variant, "flags": assignment.flags,
        "reasons": {name: flags.evaluate(name, context).reason for name in FLAGS},
    }


@router.post("/reload", summary="Re-read environment and overrides on every worker (admin)")
async def reload(request: Request, runtime: RuntimeDep, key: AdminKey) -> dict[str, Any]:
    try:
        await runtime.flags.request_reload(actor=f"api-key:{key.id}")
    except FlagConfigError as exc:
        raise HTTPException(422, str(exc)) from None
    return {"reloaded": True, "propagation_s": runtime.settings.flag_refresh_s * 2}


@admin_router.put("/{name}", summary="Override a flag at runtime (audited; every worker within 2 s)")
async def set_flag(name: str, body: FlagUpdateIn, runtime: RuntimeDep, key: AdminKey) -> dict[str, Any]:
    try:
        config = await runtime.flags.set(
            name, actor=f"api-key:{key.id}", reason=body.reason, enabled=body.enabled,
            rollout=body.rollout_fraction, user_ids=body.user_ids, kill=body.kill)
    except UnknownFlagError as exc:
        raise HTTPException(404, str(exc.args[0])) from None
    except FlagConfigError as exc:
        raise HTTPException(422, str(exc)) from None
    return {"name": name, **_public(config, None), "user_ids": sorted(config.user_ids)}


@admin_router.delete("/{name}", summary="Drop a flag's override (back to environment and defaults)")
async def clear_flag(name: str, runtime: RuntimeDep, key: AdminKey,
                     reason: Annotated[str, Query(min_length=1, max_length=500)]) -> dict[str, Any]:
    try:
        config = await runtime.flags.clear(name, actor=f"api-key:{key.id}", reason=reason)
    except UnknownFlagError as exc:
        raise HTTPException(404, str(exc.args[0])) from None
    return {"name": name, **_public(config, None)}


@admin_router.get("/{name}/history", summary="Audit trail of a flag: who, when, old → new, why")
async def history(name: str, runtime: RuntimeDep, _: AdminKey,
                  limit: Annotated[int, Query(ge=1, le=1000)] = 50) -> list[dict[str, Any]]:
    if name not in FLAGS:
        raise HTTPException(404, f"unknown flag {name!r}")
    return await runtime.flags.history(name, limit)
