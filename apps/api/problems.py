"""Every error is `application/problem+json` (RFC 9457) with an actionable message and the request id.

A body says what failed, never an exception's text (SQL, hosts, URLs with credentials): those go to
the log, where the formatter masks credentials."""

from __future__ import annotations

import errno
import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from redis.exceptions import RedisError
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException as StarletteHTTPException

from apps.search.types import FilterLimitError

log = logging.getLogger(__name__)
PROBLEM = "application/problem+json"


def problem_response(status: int, detail: str, *, instance: str, request_id: str | None, title: str | None = None,
                     headers: dict[str, str] | None = None, errors: list[dict[str, Any]] | None = None) -> JSONResponse:
    """The one problem+json builder; middleware that runs outside a route calls it directly."""
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": title or HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        "instance": instance,
        "request_id": request_id,
    }
    if errors:
        body["errors"] = errors
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


def problem(request: Request, status: int, detail: str, headers: dict[str, str] | None = None,
            errors: list[dict[str, Any]] | None = None) -> JSONResponse:
    return problem_response(status, detail, instance=request.url.path,
                            request_id=getattr(request.state, "request_id", None), headers=headers, errors=errors)


def _field(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


def _disk_full(exc: BaseException) -> bool:
    """SQLite's SQLITE_FULL, PostgreSQL's disk_full (53100), or the OS's ENOSPC."""
    orig = getattr(exc, "orig", None)
    if getattr(orig, "sqlstate", None) == "53100" or getattr(orig, "pgcode", None) == "53100":
        return True
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return True
    return "database or disk is full" in str(orig or exc)


def install(app: FastAPI) -> None:
    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"no route {request.method} {request.url.path}; see /docs"
        if exc.status_code == 405:
            detail = f"{request.method} is not allowed on {request.url.path}"
        return problem(request, exc.status_code, detail, headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        if any(e.get("type") == "json_invalid" for e in exc.errors()):
            where = next(e for e in exc.errors() if e.get("type") == "json_invalid")
            position = where.get("loc", ("body", "?"))[-1]
            return problem(request, 400, f"malformed JSON body (error at character {position}); send a JSON object")
        errors = [{"field": _field(tuple(e.get("loc", ()))), "message": e.get("msg", "invalid")} for e in exc.errors()]
        detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
        return problem(request, 422, detail, errors=errors)

    @app.exception_handler(FilterLimitError)
    async def _filters(request: Request, exc: FilterLimitError) -> JSONResponse:
        # Raised by the search service before any SQL runs, for every route that searches.
        return problem(request, 422, str(exc), errors=[{"field": "filters", "message": str(exc)}])

    async def _unavailable(request: Request, exc: Exception) -> JSONResponse:
        log.error("dependency unavailable: %s on %s %s", type(exc).__name__, request.method, request.url.path,
                  extra={"request_id": getattr(request.state, "request_id", None)})
        if _disk_full(exc):  # nothing was written: the transaction rolled back; reads still work
            return problem(request, 507, "the database's disk is full; nothing was written. Free space (or "
                                         "grow the volume) and retry")
        return problem(request, 503, "a backing service (database or cache) is unavailable; retry shortly",
                       headers={"Retry-After": "5"})

    for unavailable in (DBAPIError, OSError, TimeoutError, RedisError):
        app.add_exception_handler(unavailable, _unavailable)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # The traceback goes to the log (credentials in URLs masked by the formatter), never to the client.
        log.error(
            "unhandled error %s on %s %s", type(exc).__name__, request.method, request.url.path,
            exc_info=exc, extra={"request_id": getattr(request.state, "request_id", None)},
        )
        return problem(request, 500, "internal error; quote the request id when reporting it")
