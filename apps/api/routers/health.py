"""GET /health: liveness of the service and its dependencies, unauthenticated and fast."""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse
from sqlalchemy import func, select, text

from apps import __version__
from apps.api.deps import ServicesDep
from apps.core.models import Chunk, Document, utcnow

router = APIRouter(tags=["health"])
_TIMEOUT_S = 2.0


async def _timed(work) -> tuple[bool, float]:
    start = time.perf_counter()
    try:
        await asyncio.wait_for(work, _TIMEOUT_S)
        ok = True
    except Exception:
        ok = False
    return ok, round((time.perf_counter() - start) * 1000, 2)


@router.get("/health", summary="Service health (add ?detailed=true for dependency details)")
async def health(services: ServicesDep, detailed: Annotated[bool, Query()] = False) -> JSONResponse:
    engine = services.runtime.engine

    async def ping_db() -> None:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    db_ok, db_ms = await _timed(ping_db())
    redis_state, redis_ms = "not_configured", None
    if services.redis is not None:
        ok, redis_ms = await _timed(services.redis.ping())
        redis_state = "connected" if ok else "error"
    status = "unhealthy" if not db_ok else ("degraded" if redis_state == "error" else "healthy")
    settings = services.runtime.settings
    body: dict[str, Any] = {
        "status": status,
        "database": "connected" if db_ok else "error",
        "redis": redis_state,
        "timestamp": utcnow().isoformat(),
        "version": __version__,
        "environment": settings.environment.value,
    }
    if detailed:
        body["latency_ms"] = {"database": db_ms, "redis": redis_ms}
        body["backend"] = settings.backend
        body["embedding_model"] = services.runtime.ingestion.embedder.name
        body["flags"] = {name: {**c.public(), "user_ids": len(c.user_ids), "source": c.source}
                         for name, c in services.runtime.flags.configs().items()}
        try:
            body["canary"] = await services.canary.status()
        except Exception:
            body["canary"] = None
        if db_ok:
            try:
                async with engine.connect() as conn:
                    body["alembic_revision"] = (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalar()
                    body["corpus"] = {
                        "documents": (await conn.execute(select(func.count()).select_from(Document))).scalar_one(),
                        "chunks": (await conn.execute(select(func.count()).select_from(Chunk))).scalar_one(),
                    }
            except Exception:
                body["corpus"] = None
    return JSONResponse(body, status_code=503 if status == "unhealthy" else 200)
