"""GET /health: liveness of the service and its dependencies, unauthenticated and fast.

Unauthenticated, so it says what is down, never how it failed: exception texts name hosts, ports and
sometimes URLs with credentials (the log keeps them, redacted).
"""

from __future__ import annotations

import asyncio
import re
import time
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse

from apps import __version__
from apps.api.deps import RuntimeDep
from apps.core.db import ping, schema_revision
from apps.core.models import utcnow
from apps.ingestion import catalog
from apps.runtime import Runtime

router = APIRouter(tags=["health"])
_TIMEOUT_S = 2.0
# "ConnectionError: Error 111 connecting to redis.internal:6379": an exception's text, not a reason.
_EXCEPTION_TEXT = re.compile(r"^[A-Za-z_][\w.]*: ")


def _public(reason: str | None) -> str | None:
    if reason and _EXCEPTION_TEXT.match(reason):
        return "the job queue (Redis) is unreachable"
    return reason


async def _timed(work) -> tuple[bool, float]:
    start = time.perf_counter()
    try:
        await asyncio.wait_for(work, _TIMEOUT_S)
        ok = True
    except Exception:
        ok = False
    return ok, round((time.perf_counter() - start) * 1000, 2)


# What /health says of a model server; its addresses and error texts are the admin dashboard's.
_SERVER_FIELDS = ("provider", "model", "state", "calls", "errors", "latency_ms")


async def _model_servers(runtime: Runtime, probe: bool) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """The answer model's server (None for the extractive composer) and the reranker (None when none is
    configured). `probe` asks the model server now, within the health deadline; otherwise its last word."""
    try:
        llm = await asyncio.wait_for(runtime.pipelines.provider_status(probe=probe), _TIMEOUT_S)
    except TimeoutError:
        llm = {"provider": runtime.settings.answer_provider, "state": "degraded"}
    reranker = runtime.search.reranker.status() if runtime.search.reranker is not None else None
    return _summary(llm), _summary(reranker)


def _summary(server: dict[str, Any] | None) -> dict[str, Any] | None:
    return None if server is None else {k: server.get(k) for k in _SERVER_FIELDS}


@router.get("/health", summary="Service health (add ?detailed=true for dependency details)")
async def health(runtime: RuntimeDep, detailed: Annotated[bool, Query()] = False) -> JSONResponse:
    db_ok, db_ms = await _timed(ping(runtime.engine))
    redis_state, redis_ms = "not_configured", None
    if runtime.redis is not None:
        ok, redis_ms = await _timed(runtime.redis.ping())
        redis_state = "connected" if ok else "error"
    llm, reranker = await _model_servers(runtime, probe=detailed)
    servers_down = any(server is not None and server["state"] == "degraded" for server in (llm, reranker))
    status = "unhealthy" if not db_ok else ("degraded" if redis_state == "error" or servers_down else "healthy")
    settings = runtime.settings
    body: dict[str, Any] = {
        "status": status,
        "database": "connected" if db_ok else "error",
        "redis": redis_state,
        "timestamp": utcnow().isoformat(),
        "version": __version__,
        "environment": settings.environment.value,
        "llm": llm,
        "reranker": reranker,
    }
    try:
        body["worker_system"] = await runtime.jobs.worker_system()
    except Exception:  # health must answer even when the jobs table cannot be read
        body["worker_system"] = {"enabled": False, "type": "background_tasks", "error": "unavailable"}
    if "reason" in body["worker_system"]:
        body["worker_system"]["reason"] = _public(body["worker_system"]["reason"])
    if detailed:
        body["latency_ms"] = {"database": db_ms, "redis": redis_ms}
        queue = await runtime.jobs.queue.status()
        configured = runtime.jobs.queue.configured
        body["job_queue"] = {"redis": "connected" if queue.reachable else ("error" if configured else "not_configured"),
                             "rq_depth": queue.depth, "workers": queue.workers, "error": _public(queue.error)}
        body["backend"] = settings.backend
        body["embedding_model"] = runtime.ingestion.embedder.name
        body["embedding_provider"] = settings.embedding_provider
        body["flags"] = {name: c.view() for name, c in runtime.flags.configs().items()}
        try:
            body["canary"] = await runtime.canary.status()
        except Exception:
            body["canary"] = None
        if db_ok:
            try:
                body["alembic_revision"] = await schema_revision(runtime.engine)
                async with runtime.sessions() as session:
                    body["corpus"] = await catalog.counts(session)
            except Exception:
                body["corpus"] = None
    return JSONResponse(body, status_code=503 if status == "unhealthy" else 200)
