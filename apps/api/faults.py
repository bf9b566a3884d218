"""Fault injection into the canary variant, so the canary loop can be exercised for real.

Settings FAULT_ERROR_RATE (a fraction of requests answered 500) and FAULT_LATENCY_MS (added delay)
apply to requests of FAULT_VARIANT (default "new") on the routes canary analysis watches (search and
answer); settings refuse them in production.
Which requests fail is a stable function of the request id.
"""

from __future__ import annotations

import asyncio

from fastapi.responses import JSONResponse

from apps.api import problems
from apps.core.config import Settings
from apps.core.hashing import unit_draw
from apps.rollout.canary import ANALYSED_ROUTES


async def apply(settings: Settings, variant: str, request_id: str, endpoint: str) -> JSONResponse | None:
    if variant != settings.fault_variant or not endpoint.startswith(ANALYSED_ROUTES):
        return None
    if settings.fault_latency_ms:
        await asyncio.sleep(settings.fault_latency_ms / 1000)
    if settings.fault_error_rate and unit_draw(request_id, "fault") < settings.fault_error_rate:
        return problems.problem_response(500, "fault injected by FAULT_ERROR_RATE (canary drill)",
                                         instance=endpoint, request_id=request_id, title="Injected Fault")
    return None
