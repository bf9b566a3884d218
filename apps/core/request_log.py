"""Request events in the database, so every worker's traffic shows up in one admin view.

Requests append to an in-process buffer that a background task flushes every second in one
transaction: the hot path never waits on a write, and at most a second of events is lost in a crash.
"""

from __future__ import annotations

import logging
import statistics
from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, insert, or_, select
from sqlalchemy.ext.asyncio import AsyncEngine

from apps.core.models import RequestEvent, utcnow
from apps.core.periodic import Periodic

log = logging.getLogger(__name__)


def _percentile(values: list[float], p: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, int(round(p / 100 * len(ordered) + 0.5)) - 1))
    return round(ordered[index], 2)


def summarise(latencies: list[float], errors: int) -> dict[str, Any]:
    n = len(latencies)
    return {
        "requests": n,
        "errors": errors,
        "error_rate": round(errors / n, 4) if n else 0.0,
        "latency_ms": {
            "p50": _percentile(latencies, 50), "p95": _percentile(latencies, 95), "p99": _percentile(latencies, 99),
            "mean": round(statistics.fmean(latencies), 2) if n else 0.0,
        },
    }


_OPTIONAL = ("strategy", "variant", "quality", "llm_provider", "llm_model", "llm_input_tokens", "llm_output_tokens",
             "llm_cost_usd", "llm_ms")


class RequestLog:
    def __init__(self, engine: AsyncEngine, retention: timedelta = timedelta(days=7)) -> None:
        self._engine = engine
        self._buffer: list[dict[str, Any]] = []
        self._retention = retention
        self._flusher = Periodic("request-log-flush", 1.0, self.flush)
        self._pruner = Periodic("request-log-prune", 3600.0, self.prune)

    def record(self, endpoint: str, method: str, status: int, latency_ms: float, **extra: Any) -> None:
        """`extra`: any of strategy, variant, quality and the llm_* usage columns."""
        unknown = set(extra) - set(_OPTIONAL)
        if unknown:
            raise TypeError(f"unknown request event fields: {sorted(unknown)}")
        self._buffer.append(dict(ts=utcnow(), endpoint=endpoint, method=method, status=status,
                                 latency_ms=latency_ms, **{k: extra.get(k) for k in _OPTIONAL}))

    async def flush(self) -> None:
        if not self._buffer:
            return
        rows, self._buffer = self._buffer, []
        try:
            async with self._engine.begin() as conn:
                await conn.execute(insert(RequestEvent), rows)
        except Exception as exc:  # metrics must never take the service down
            log.warning("dropping %d request events: %s", len(rows), type(exc).__name__)

    async def prune(self) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(delete(RequestEvent).where(RequestEvent.ts < utcnow() - self._retention))

    def start(self) -> None:
        self._flusher.start()
        self._pruner.start()

    async def stop(self) -> None:
        self._flusher.stop()
        self._pruner.stop()
        await self.flush()

    async def window(self, minutes: float) -> dict[str, Any]:
        await self.flush()
        since: datetime = utcnow() - timedelta(minutes=minutes)
        async with self._engine.connect() as conn:
            rows = (await conn.execute(
                select(RequestEvent.endpoint, RequestEvent.method, RequestEvent.status, RequestEvent.latency_ms,
                       RequestEvent.strategy).where(RequestEvent.ts >= since)
            )).all()
        by_endpoint: dict[str, list[Any]] = defaultdict(list)
        by_strategy: dict[str, list[Any]] = defaultdict(list)
        for r in rows:
            by_endpoint[f"{r.method} {r.endpoint}"].append(r)
            if r.strategy:
                by_strategy[r.strategy].append(r)

        def group(items: list[Any]) -> dict[str, Any]:
            return summarise([r.latency_ms for r in items], sum(1 for r in items if r.status >= 500))

        return {
            "window_minutes": minutes,
            "total": group(list(rows)),
            "by_endpoint": {k: group(v) for k, v in sorted(by_endpoint.items())},
            "by_strategy": {k: group(v) for k, v in sorted(by_strategy.items())},
        }

    async def _rows(self, since: datetime, *columns: Any, endpoints: tuple[str, ...] = ()) -> list[Any]:
        await self.flush()
        query = select(*columns).where(RequestEvent.ts >= since)
        if endpoints:
            query = query.where(or_(*(RequestEvent.endpoint.startswith(e) for e in endpoints)))
        async with self._engine.connect() as conn:
            return list((await conn.execute(query)).all())

    async def by_variant(self, minutes: float, endpoints: tuple[str, ...] = ()) -> dict[str, dict[str, Any]]:
        """Requests, errors, latency percentiles and mean quality per pipeline variant over a window
        (only routes starting with one of `endpoints`, when given)."""
        rows = await self._rows(utcnow() - timedelta(minutes=minutes), RequestEvent.variant, RequestEvent.status,
                                RequestEvent.latency_ms, RequestEvent.quality, endpoints=endpoints)
        groups: dict[str, list[Any]] = defaultdict(list)
        for r in rows:
            groups[r.variant or "unknown"].append(r)
        out = {}
        for variant, items in sorted(groups.items()):
            summary = summarise([r.latency_ms for r in items], sum(1 for r in items if r.status >= 500))
            qualities = [r.quality for r in items if r.quality is not None]
            summary["quality"] = round(statistics.fmean(qualities), 4) if qualities else None
            summary["quality_samples"] = len(qualities)
            out[variant] = summary
        return out

    async def llm_usage(self, minutes: float) -> list[dict[str, Any]]:
        """Tokens, cost and latency by provider, model and variant over a window."""
        rows = await self._rows(utcnow() - timedelta(minutes=minutes), RequestEvent.llm_provider,
                                RequestEvent.llm_model, RequestEvent.variant, RequestEvent.llm_input_tokens,
                                RequestEvent.llm_output_tokens, RequestEvent.llm_cost_usd, RequestEvent.llm_ms)
        groups: dict[tuple[str, str, str], list[Any]] = defaultdict(list)
        for r in rows:
            if r.llm_provider:
                groups[(r.llm_provider, r.llm_model or "", r.variant or "unknown")].append(r)
        return [
            {"provider": p, "model": m, "variant": v, "requests": len(items),
             "input_tokens": sum(r.llm_input_tokens or 0 for r in items),
             "output_tokens": sum(r.llm_output_tokens or 0 for r in items),
             "cost_usd": round(sum(r.llm_cost_usd or 0.0 for r in items), 6),
             "mean_latency_ms": round(statistics.fmean(r.llm_ms or 0.0 for r in items), 2)}
            for (p, m, v), items in sorted(groups.items())
        ]
