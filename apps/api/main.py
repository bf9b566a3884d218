"""The FastAPI application: `uvicorn apps.api.main:app`."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI

from apps import __version__
from apps.api import problems
from apps.api.middleware import BodyGuard, PageSecurity, RequestContext
from apps.api.routers import admin, answer, ask, dashboard, documents, feedback, flags, health, observability, search
from apps.api.routers import collections as collection_routes
from apps.api.routers import jobs as jobs_routes
from apps.core.config import Settings, get_settings
from apps.core.logging import configure_logging
from apps.doors.app import Doors
from apps.runtime import build_runtime

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging(settings.log_level)
    doors = Doors(settings)  # MCP at /mcp, the A2A agent, the OpenAI chat API (apps/doors)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = build_runtime(settings)
        await runtime.warm_up()
        runtime.start()
        app.state.runtime = runtime
        log.info("dt-rag started", extra={"backend": settings.backend, "environment": settings.environment.value})
        try:
            async with doors.serving(runtime):
                yield
        finally:
            await runtime.close()

    app = FastAPI(
        title="DT-RAG",
        version=__version__,
        description="Hybrid retrieval and grounded answers over your own documents. "
        "Every `/api/v1` route needs an `X-API-Key` header.",
        openapi_url="/api/v1/openapi.json",
        docs_url="/docs",
        redoc_url=None,
        lifespan=lifespan,
    )
    problems.install(app)

    # The last added runs first: the request context sees every response, the guard's 408 and 413 too.
    app.add_middleware(BodyGuard, max_bytes=settings.max_request_bytes, read_timeout_s=settings.body_read_timeout_s)
    app.add_middleware(PageSecurity, third_party_pages=(app.docs_url,))
    app.add_middleware(RequestContext, fastapi_app=app, settings=settings)

    v1 = APIRouter(prefix="/api/v1")
    v1.include_router(search.router)
    v1.include_router(documents.router)
    v1.include_router(admin.router)
    v1.include_router(answer.router)
    v1.include_router(feedback.router)
    v1.include_router(flags.admin_router)
    v1.include_router(jobs_routes.router)
    v1.include_router(collection_routes.router)
    v1.include_router(ask.api_router)
    app.include_router(v1)
    app.include_router(flags.router)
    app.include_router(observability.router)
    app.include_router(answer.router)
    app.include_router(admin.cache_router)
    app.include_router(admin.runbook_router)
    app.include_router(health.router)
    app.include_router(jobs_routes.admin_router)
    app.include_router(dashboard.router)
    app.include_router(ask.router)  # /ask, and / redirects to it
    doors.mount(app)
    return app


app = create_app()
