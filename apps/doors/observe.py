"""Metrics and a log line for every call through a door: calls, errors by kind (the caller's or ours)
and latency, by door and operation (`dtrag_door_*` in /metrics)."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager

from apps.core import metrics
from apps.search.types import FilterLimitError

log = logging.getLogger("apps.doors")


def error_kind(exc: BaseException) -> str:
    """`client` for a refusal of the caller's request (4xx: auth, limits, bad input), else `server`."""
    if isinstance(exc, FilterLimitError):  # the search service's own 422 (apps/doors/errors.py)
        return "client"
    status = getattr(exc, "status", None) or getattr(exc, "status_code", None)
    return "client" if isinstance(status, int) and 400 <= status < 500 else "server"


@contextmanager
def observed(door: str, operation: str, **fields: object) -> Iterator[None]:
    start = time.perf_counter()
    metrics.DOOR_CALLS.labels(door, operation).inc()
    outcome = "ok"
    try:
        yield
    except Exception as exc:  # a cancelled call is not an error
        outcome = error_kind(exc)
        metrics.DOOR_ERRORS.labels(door, operation, outcome).inc()
        raise
    finally:
        elapsed = time.perf_counter() - start
        metrics.DOOR_LATENCY.labels(door, operation).observe(elapsed)
        log.info("door call", extra={"door": door, "operation": operation, "outcome": outcome,
                                     "ms": round(elapsed * 1000, 2), **fields})


def count_error(door: str, operation: str, kind: str) -> None:
    """For protocols that answer an error instead of raising one (an MCP tool result with isError)."""
    metrics.DOOR_ERRORS.labels(door, operation, kind).inc()
