"""Request events in the database, so every worker's traffic shows up in one admin view.

Requests append to an in-process buffer that a background task flushes every second: the hot path
never waits on a write, and at most a second of events is lost in a crash. The views aggregate in
SQL (counts, means, nearest-rank percentiles), so a window of any size costs the service a few rows.

Events go through `BufferedWriter`, which drops a row the database refuses instead of the batch.

Every event says whether a valid API key came with it. The views that steer decisions (canary
windows, the per-variant views, health error rates) count only those: a client without a key can
neither push a variant over its SLA nor dilute a real failure with fast 401s.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import BigInteger, ColumnElement, Select, case, cast, func, insert, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from apps.core.flushed_log import FlushedLog
from apps.core.models import RequestEvent, utcnow

log = logging.getLogger(__name__)

_OPTIONAL = ("strategy", "variant", "quality", "llm_provider", "llm_model", "llm_input_tokens", "llm_output_tokens",
             "llm_cost_usd", "llm_ms")
_AUTHENTICATED = (RequestEvent.authenticated.is_(True),)

# The latency percentiles of every view. Their nearest ranks are computed in SQL with integer
# arithmetic, ceil(p·n/100) = (p·n + 99) div 100: exactly `apps.core.stats.rank` for integer p.
PERCENTILES = (50, 95, 99)


async def _insert_events(conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
    await conn.execute(insert(RequestEvent), rows)


def _describe_event(row: dict[str, Any]) -> dict[str, Any]:
    return {"endpoint": row["endpoint"], "method": row["method"], "status": row["status"], "ts": row["ts"]}


def _summary_query(since: datetime, keys: Sequence[ColumnElement[Any]], *where: ColumnElement[bool]) -> Select[Any]:
    """Requests, errors, mean and percentile latencies, mean quality per group of `keys` (one row
    for no keys), aggregated by the database: each event is ranked by latency within its group by a
    window function, and the percentiles are the latencies at the nearest ranks."""
    e = RequestEvent
    partition = list(keys) or None
    ranked = (
        select(*(k.label(f"key{i}") for i, k in enumerate(keys)), e.status, e.latency_ms, e.quality,
               func.row_number().over(partition_by=partition, order_by=e.latency_ms).label("latency_rank"),
               func.count().over(partition_by=partition).label("n"))
        .where(e.ts >= since, *where)
        .subquery()
    )
    groups = [ranked.c[f"key{i}"] for i in range(len(keys))]
    at_rank = [func.max(case((ranked.c.latency_rank == (ranked.c.n * p + 99) // 100, ranked.c.latency_ms)))
               .label(f"p{p}") for p in PERCENTILES]
    return select(
        *groups,
        func.count().label("requests"),
        func.coalesce(func.sum(case((ranked.c.status >= 500, 1), else_=0)), 0).label("errors"),
        func.avg(ranked.c.latency_ms).label("mean"),
        *at_rank,
        func.avg(ranked.c.quality).label("quality"),
        func.count(ranked.c.quality).label("quality_samples"),
    ).group_by(*groups)


def _summary(row: Any, quality: bool = False) -> dict[str, Any]:
    n, errors = row.requests, int(row.errors)
    latency = {f"p{p}": round(float(getattr(row, f"p{p}") or 0.0), 2) for p in PERCENTILES}
    latency["mean"] = round(float(row.mean or 0.0), 2)
    out: dict[str, Any] = {"requests": n, "errors": errors, "error_rate": round(errors / n, 4) if n else 0.0,
                           "latency_ms": latency}
    if quality:
        out["quality"] = round(float(row.quality), 4) if row.quality is not None else None
        out["quality_samples"] = row.quality_samples
    return out


def _endpoint_filter(endpoints: tuple[str, ...]) -> tuple[ColumnElement[bool], ...]:
    return (or_(*(RequestEvent.endpoint.startswith(p) for p in endpoints)),) if endpoints else ()


class RequestLog(FlushedLog[dict[str, Any]]):
    def __init__(self, engine: AsyncEngine) -> None:
        super().__init__("request-log", engine, _insert_events, _describe_event, interval_s=1.0)

    def record(self, endpoint: str, method: str, status: int, latency_ms: float, *, authenticated: bool = False,
               **extra: Any) -> None:
        """`extra`: any of strategy, variant, quality and the llm_* usage columns."""
        unknown = set(extra) - set(_OPTIONAL)
        if unknown:
            raise TypeError(f"unknown request event fields: {sorted(unknown)}")
        self._writer.append(dict(ts=utcnow(), endpoint=endpoint, method=method, status=status, latency_ms=latency_ms,
                                 authenticated=authenticated, **{k: extra.get(k) for k in _OPTIONAL}))

    async def _fetch(self, query: Select[Any]) -> list[Any]:
        async with self._engine.connect() as conn:
            return list((await conn.execute(query)).all())

    async def window(self, minutes: float, authenticated_only: bool = False) -> dict[str, Any]:
        """Requests, errors and latency in total, per endpoint and per strategy over a window (only
        requests with a valid key when `authenticated_only`: what health judges)."""
        await self.flush()
        since = utcnow() - timedelta(minutes=minutes)
        e = RequestEvent
        only = _AUTHENTICATED if authenticated_only else ()
        [total] = await self._fetch(_summary_query(since, (), *only))
        endpoints = await self._fetch(_summary_query(since, (e.method, e.endpoint), *only))
        strategies = await self._fetch(_summary_query(since, (e.strategy,), e.strategy.is_not(None), *only))
        return {
            "window_minutes": minutes,
            "total": _summary(total),
            "by_endpoint": dict(sorted((f"{r.key0} {r.key1}", _summary(r)) for r in endpoints)),
            "by_strategy": dict(sorted((r.key0, _summary(r)) for r in strategies)),
        }

    async def by_variant(self, minutes: float, endpoints: tuple[str, ...] = ()) -> dict[str, dict[str, Any]]:
        """Requests with a valid key: errors, latency percentiles and mean quality per pipeline variant
        over a window (only routes starting with one of `endpoints`, when given)."""
        await self.flush()
        since = utcnow() - timedelta(minutes=minutes)
        variant = func.coalesce(RequestEvent.variant, "unknown")
        rows = await self._fetch(_summary_query(since, (variant,), *_AUTHENTICATED, *_endpoint_filter(endpoints)))
        return dict(sorted((r.key0, _summary(r, quality=True)) for r in rows))

    async def llm_usage(self, minutes: float) -> list[dict[str, Any]]:
        """Tokens, cost and latency by provider, model and variant over a window."""
        await self.flush()
        e = RequestEvent
        keys = (e.llm_provider, func.coalesce(e.llm_model, ""), func.coalesce(e.variant, "unknown"))
        rows = await self._fetch(
            select(*keys, func.count().label("requests"),
                   func.sum(func.coalesce(e.llm_input_tokens, 0)).label("input_tokens"),
                   func.sum(func.coalesce(e.llm_output_tokens, 0)).label("output_tokens"),
                   func.sum(func.coalesce(e.llm_cost_usd, 0.0)).label("cost_usd"),
                   func.avg(func.coalesce(e.llm_ms, 0.0)).label("mean_latency_ms"))
            .where(e.ts >= utcnow() - timedelta(minutes=minutes), e.llm_provider.is_not(None))
            .group_by(*keys)
        )
        return sorted(
            ({"provider": r[0], "model": r[1], "variant": r[2], "requests": r.requests,
              "input_tokens": int(r.input_tokens), "output_tokens": int(r.output_tokens),
              "cost_usd": round(float(r.cost_usd), 6), "mean_latency_ms": round(float(r.mean_latency_ms), 2)}
             for r in rows),
            key=lambda u: (u["provider"], u["model"], u["variant"]),
        )

    async def timeseries(self, minutes: float, bucket_s: int, endpoints: tuple[str, ...] = ()) -> dict[str, Any]:
        """Per pipeline variant and time bucket of `bucket_s` seconds (counted from the window's start):
        requests with a valid key, errors and latency percentiles, the summaries of `by_variant` grouped
        by time too.
        Buckets without requests are absent."""
        await self.flush()
        since = utcnow() - timedelta(minutes=minutes)
        start = int(since.timestamp())
        e = RequestEvent
        # Whole epoch seconds, floored on both backends (SQLite stores UTC text; '%s' truncates it).
        if self._engine.dialect.name == "postgresql":
            epoch = cast(func.floor(func.extract("epoch", e.ts)), BigInteger)
        else:
            epoch = cast(func.strftime("%s", e.ts), BigInteger)
        bucket = (epoch - start) // bucket_s  # integer division on both: the bucket index, never negative
        variant = func.coalesce(e.variant, "unknown")
        rows = await self._fetch(_summary_query(since, (variant, bucket), *_AUTHENTICATED,
                                                *_endpoint_filter(endpoints)))
        series: dict[str, list[dict[str, Any]]] = {}
        for r in sorted(rows, key=lambda r: (r.key0, r.key1)):
            series.setdefault(r.key0, []).append({"t": start + int(r.key1) * bucket_s, **_summary(r)})
        return {"window_minutes": minutes, "bucket_s": bucket_s, "start": start, "series": series}
