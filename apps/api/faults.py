"""Fault injection into the canary variant, so the canary loop can be exercised for real.

Settings FAULT_ERROR_RATE (a fraction of requests answered 500) and FAULT_LATENCY_MS (added delay)
apply to requests of FAULT_VARIANT (default "new") on the routes canary analysis watches (search and
answer) that carry a valid API key: canary analysis counts only those, and a drill must not let
anyone without a key produce 500s. Settings refuse them in production.
Which requests fail is a stable function of the request id.
"""

from __future__ import annotations

import asyncio

from fastapi.responses import JSONResponse
from starlette.types import Scope

from apps.api import problems
from apps.core.api_keys import ApiKeyStore
from apps.core.config import Settings
from apps.core.hashing import unit_draw
from apps.rollout.canary import ANALYSED_ROUTES


async def apply(settings: Settings, keys: ApiKeyStore, scope: Scope, variant: str,
                endpoint: str) -> JSONResponse | None:
    if not (settings.fault_error_rate or settings.fault_latency_ms):
        return None
    if variant != settings.fault_variant or not endpoint.startswith(ANALYSED_ROUTES):
        return None
    presented = next((v for k, v in scope.get("headers") or () if k == b"x-api-key"), None)
    key = await keys.verify(presented.decode("latin-1")) if presented else None
    if key is None:  # the route itself answers 401
        return None
    state = scope["state"]
    state["api_key_id"] = key.id
    if settings.fault_latency_ms:
        await asyncio.sleep(settings.fault_latency_ms / 1000)
    if settings.fault_error_rate and unit_draw(state["request_id"], "fault") < settings.fault_error_rate:
        return problems.problem_response(500, "fault injected by FAULT_ERROR_RATE (canary drill)",
                                         instance=endpoint, request_id=state["request_id"], title="Injected Fault")
    return None
