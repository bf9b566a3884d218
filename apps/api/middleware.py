"""ASGI middleware: the request context (id, flag assignment, metrics, request log), the body guard and
the pages' security headers.

All plain ASGI, not `@app.middleware("http")`: a streamed answer is timed to its last byte, and a
body is counted and timed as it arrives instead of being buffered whole.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from typing import Any

from fastapi import FastAPI
from starlette.datastructures import MutableHeaders
from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from apps.api import faults, problems
from apps.core import metrics
from apps.core.config import Settings
from apps.rollout.flags import FlagContext

# A client's X-Request-ID becomes a database key and a log field: accept only a short, plain id.
_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def request_id_of(scope: Scope) -> str:
    """The client's X-Request-ID when it is safe, else a fresh one (echoed back either way)."""
    for name, value in scope.get("headers") or ():
        if name == b"x-request-id":
            candidate = value.decode("latin-1")
            if _SAFE_REQUEST_ID.match(candidate):
                return candidate
            break
    return uuid.uuid4().hex


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers") or ():
        if key == name:
            return value.decode("latin-1")
    return None


class RouteTemplates:
    """Maps a request path to its route template (`/api/v1/documents/{document_id}`) for metric labels,
    so label cardinality stays bounded whatever ids clients send."""

    def __init__(self, app: FastAPI) -> None:
        self._app = app
        self._compiled: list[tuple[re.Pattern[str], str]] | None = None

    def __call__(self, path: str) -> str:
        if self._compiled is None:
            paths = self._app.openapi()["paths"]
            templates = set(paths) | {p.rstrip("/") + "/" for p in paths}
            self._compiled = [(compile_path(t)[0], t) for t in sorted(templates)]
        for pattern, template in self._compiled:
            if pattern.match(path):
                return template.rstrip("/") or "/"
        return "unmatched"


class RequestContext:
    """Names the request, assigns its pipeline variant, and records it once its response has ended.

    The outermost of the app's middleware: it sees every response, the body guard's 408 and 413
    included, and records the status the client got (500 only when the app raised before answering).
    """

    def __init__(self, app: ASGIApp, fastapi_app: FastAPI, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        self.templates = RouteTemplates(fastapi_app)
        self.fastapi_app = fastapi_app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state: dict[str, Any] = scope.setdefault("state", {})
        state["request_id"] = request_id = request_id_of(scope)
        runtime = getattr(self.fastapi_app.state, "runtime", None)
        if runtime is None:  # before startup finished
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        context = FlagContext(user_id=_header(scope, b"x-user-id"), job_id=_header(scope, b"x-job-id"),
                              request_id=request_id)
        assignment = runtime.flags.assign(context)
        state["assignment"] = assignment
        endpoint = self.templates(scope["path"])
        status = 500  # what the client gets if the app raises before answering

        async def send_with_context(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []),
                                      (b"x-request-id", request_id.encode()),
                                      (b"x-pipeline-variant", assignment.variant.encode())]
            await send(message)

        try:
            injected = await faults.apply(self.settings, runtime.keys, scope, assignment.variant, endpoint)
            if injected is not None:
                await injected(scope, receive, send_with_context)
            else:
                await self.app(scope, receive, send_with_context)
        finally:
            # After the last body message: a streamed answer counts its whole duration.
            elapsed = (time.perf_counter() - start) * 1000
            metrics.REQUESTS.labels(endpoint, scope["method"], assignment.variant, str(status)).inc()
            metrics.LATENCY.labels(endpoint, assignment.variant).observe(elapsed / 1000)
            if status >= 500:
                metrics.ERRORS.labels(endpoint, assignment.variant, str(status)).inc()
            runtime.request_log.record(
                endpoint, scope["method"], status, round(elapsed, 3), variant=assignment.variant,
                authenticated=state.get("api_key_id") is not None,  # set by the API-key dependency
                strategy=state.get("strategy"), quality=state.get("quality"), **(state.get("llm") or {}),
            )


class BodyGuard:
    """413 for a body over the limit (by Content-Length or by counting a streamed body), 408 for a body
    not complete within the read timeout of the request's start: one bound for the whole body, so a
    client trickling a byte at a time holds a worker no longer than one that stops sending."""

    def __init__(self, app: ASGIApp, max_bytes: int, read_timeout_s: float) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.read_timeout_s = read_timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = _header(scope, b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            await self._reject(scope, send, 413, f"request body is over the {self.max_bytes:,}-byte limit")
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.read_timeout_s
        seen = 0
        body_done = False
        started = False

        async def guarded() -> Message:
            nonlocal seen, body_done
            if body_done:  # the body is in: what follows is a wait for the client to disconnect
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), max(deadline - loop.time(), 0.0))
            except TimeoutError:
                raise _BodyRefused(408, f"the request body was not complete within {self.read_timeout_s:g} s; "
                                        "send it at once, or smaller") from None
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _BodyRefused(413, f"request body is over the {self.max_bytes:,}-byte limit")
                body_done = not message.get("more_body", False)
            else:
                body_done = True
            return message

        async def tracking(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, guarded, tracking)
        except _BodyRefused as refused:
            if not started:
                await self._reject(scope, send, refused.status, refused.detail)

    async def _reject(self, scope: Scope, send: Send, status: int, detail: str) -> None:
        # Outside the routes, so it builds the problem itself; RequestContext (outside it) adds the id header.
        request_id = scope.get("state", {}).get("request_id") or request_id_of(scope)
        response = problems.problem_response(status, detail, instance=scope.get("path", ""), request_id=request_id,
                                             headers={"Connection": "close"})
        await response(scope, _no_body, send)


# The pages the service serves (the dashboard, and any HTML page after it) load only their own
# scripts and styles and are never framed; the API docs page loads Swagger UI from its CDN, so it
# gets only the framing rules.
PAGE_POLICY = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
               "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
FRAMING_POLICY = "frame-ancestors 'none'"


class PageSecurity:
    """Security headers by content type: `nosniff` on every response; on HTML, a Content-Security-Policy,
    `X-Frame-Options: DENY` and `Referrer-Policy: no-referrer`, so a new page is covered without a line."""

    def __init__(self, app: ASGIApp, third_party_pages: tuple[str, ...] = ()) -> None:
        self.app = app
        self.third_party_pages = third_party_pages

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                headers = MutableHeaders(scope=message)
                headers.setdefault("X-Content-Type-Options", "nosniff")
                if headers.get("content-type", "").startswith("text/html"):
                    third_party = scope["path"] in self.third_party_pages
                    headers["Content-Security-Policy"] = FRAMING_POLICY if third_party else PAGE_POLICY
                    headers["X-Frame-Options"] = "DENY"
                    headers["Referrer-Policy"] = "no-referrer"
            await send(message)

        await self.app(scope, receive, with_headers)


async def _no_body() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


class _BodyRefused(BaseException):
    # Not an Exception: FastAPI turns any Exception raised while it parses a body into a 400, and this
    # must reach BodyGuard as what it is (413 or 408).
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
