"""The FastAPI application: `uvicorn apps.api.main:app`."""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import Response
from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from apps import __version__
from apps.api import faults, problems
from apps.api.routers import admin, answer, documents, feedback, flags, health, observability, search
from apps.core import metrics
from apps.core.config import Settings, get_settings
from apps.core.logging import configure_logging
from apps.rollout.flags import FlagContext
from apps.runtime import build_runtime

log = logging.getLogger(__name__)


class BodyLimit:
    """413 for bodies over the limit, by Content-Length or by counting a streamed body."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            await self._reject(scope, send)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _TooLarge()
            return message

        try:
            await self.app(scope, limited, send)
        except _TooLarge:
            await self._reject(scope, send)

    async def _reject(self, scope: Scope, send: Send) -> None:
        # Runs outside the request-context middleware, so it names the request itself.
        headers = dict(scope.get("headers") or [])
        request_id = headers.get(b"x-request-id", b"").decode("latin-1") or uuid.uuid4().hex
        response = problems.problem_response(413, f"request body is over the {self.max_bytes:,}-byte limit",
                                             instance=scope.get("path", ""), request_id=request_id,
                                             headers={"X-Request-ID": request_id})
        await response(scope, lambda: None, send)  # type: ignore[arg-type]


class _TooLarge(Exception):
    pass


class RouteTemplates:
    """Maps a request path to its route template (`/api/v1/documents/{document_id}`) for metric labels,
    so label cardinality stays bounded whatever ids clients send."""

    def __init__(self, app: FastAPI) -> None:
        self._app = app
        self._compiled: list[tuple[re.Pattern[str], str]] | None = None

    def __call__(self, path: str) -> str:
        if self._compiled is None:
            templates = set(self._app.openapi()["paths"]) | {p.rstrip("/") + "/" for p in self._app.openapi()["paths"]}
            self._compiled = [(compile_path(t)[0], t) for t in sorted(templates)]
        for pattern, template in self._compiled:
            if pattern.match(path):
                return template.rstrip("/") or "/"
        return "unmatched"


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging(settings.log_level)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = build_runtime(settings)
        await runtime.warm_up()
        runtime.start()
        app.state.runtime = runtime
        log.info("dt-rag started", extra={"backend": settings.backend, "environment": settings.environment.value})
        try:
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
    templates = RouteTemplates(app)

    @app.middleware("http")
    async def request_context(request: Request, call_next) -> Response:
        request.state.request_id = request.headers.get("x-request-id") or uuid.uuid4().hex
        start = time.perf_counter()
        runtime = getattr(request.app.state, "runtime", None)
        if runtime is None:  # before startup finished
            return await call_next(request)
        context = FlagContext(user_id=request.headers.get("x-user-id"), job_id=request.headers.get("x-job-id"),
                              request_id=request.state.request_id)
        assignment = runtime.flags.assign(context)
        request.state.assignment = assignment
        endpoint = templates(request.url.path)
        injected = await faults.apply(settings, assignment.variant, request.state.request_id, endpoint)
        response = injected or await call_next(request)
        elapsed = (time.perf_counter() - start) * 1000
        response.headers["X-Request-ID"] = request.state.request_id
        response.headers["X-Pipeline-Variant"] = assignment.variant
        status = response.status_code
        metrics.REQUESTS.labels(endpoint, request.method, assignment.variant, str(status)).inc()
        metrics.LATENCY.labels(endpoint, assignment.variant).observe(elapsed / 1000)
        if status >= 500:
            metrics.ERRORS.labels(endpoint, assignment.variant, str(status)).inc()
        llm = getattr(request.state, "llm", None) or {}
        runtime.request_log.record(
            endpoint, request.method, status, round(elapsed, 3), variant=assignment.variant,
            strategy=getattr(request.state, "strategy", None), quality=getattr(request.state, "quality", None),
            **llm,
        )
        return response

    app.add_middleware(BodyLimit, max_bytes=settings.max_request_bytes)

    v1 = APIRouter(prefix="/api/v1")
    v1.include_router(search.router)
    v1.include_router(documents.router)
    v1.include_router(admin.router)
    v1.include_router(answer.router)
    v1.include_router(feedback.router)
    v1.include_router(flags.admin_router)
    app.include_router(v1)
    app.include_router(flags.router)
    app.include_router(observability.router)
    app.include_router(answer.router)
    app.include_router(admin.cache_router)
    app.include_router(health.router)
    return app


app = create_app()
