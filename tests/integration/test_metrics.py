"""The request log's views are SQL aggregates that agree with `apps.core.stats` exactly on both backends;
the HTTP views cap their windows and keep only the Prometheus text open."""

from __future__ import annotations

import random
import statistics
from collections import defaultdict
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import insert

from apps.core.config import load_settings
from apps.core.db import create_engine
from apps.core.models import RequestEvent, utcnow
from apps.core.request_log import PERCENTILES, RequestLog
from apps.core.stats import percentile
from tests.support.api import api_client

OPTIONAL = ("strategy", "quality", "llm_provider", "llm_model", "llm_input_tokens", "llm_output_tokens", "llm_cost_usd",
            "llm_ms")


def events() -> list[dict[str, Any]]:
    """Groups of sizes where an off-by-one rank shows: 1, 5 with ties, 20 (p95 is not the max), 21, 100."""
    rng = random.Random(13)
    now = utcnow()
    rows: list[dict[str, Any]] = []

    def add(variant: str | None, latencies: list[float], endpoint: str = "/api/v1/search", **extra: Any) -> None:
        for i, ms in enumerate(latencies):
            rows.append({"ts": now - timedelta(seconds=rng.uniform(1, 600)), "endpoint": endpoint, "method": "POST",
                         "status": 500 if i % 7 == 3 else 200, "latency_ms": ms, "variant": variant,
                         "authenticated": True, **dict.fromkeys(OPTIONAL), **extra})

    add("new", [float(v) for v in range(20, 0, -1)], strategy="bm25", quality=0.5)
    add("legacy", [42.125], strategy="dense", quality=0.75)
    add("ties", [5.0, 5.0, 9.0, 5.0, 1.0], endpoint="/health")
    add("v21", [round(rng.uniform(1, 900), 3) for _ in range(21)], endpoint="/api/v1/answer", strategy="hybrid_cc")
    add(None, [round(rng.lognormvariate(3, 1), 3) for _ in range(100)], endpoint="/api/v1/answer")
    add("new", [7.0, 3.0], endpoint="/api/v1/answer", llm_provider="gemini", llm_model="flash",
        llm_input_tokens=100, llm_output_tokens=20, llm_cost_usd=0.0001, llm_ms=300.0)
    return rows


def expected(rows: list[dict[str, Any]]) -> dict[str, Any]:
    latencies = [r["latency_ms"] for r in rows]
    errors = sum(r["status"] >= 500 for r in rows)
    return {"requests": len(rows), "errors": errors, "error_rate": round(errors / len(rows), 4),
            "latency_ms": {**{f"p{p}": round(percentile(latencies, p), 2) for p in PERCENTILES}}}


def without_mean(summary: dict[str, Any]) -> dict[str, Any]:
    return {**summary, "latency_ms": {k: v for k, v in summary["latency_ms"].items() if k != "mean"}}


def grouped(rows: list[dict[str, Any]], key) -> dict[str, list[dict[str, Any]]]:
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        if key(r) is not None:
            groups[key(r)].append(r)
    return groups


async def test_sql_aggregates_equal_the_one_percentile_definition(database_url: str) -> None:
    engine = create_engine(load_settings(database_url=database_url))
    rows = events()
    old = {**rows[0], "ts": utcnow() - timedelta(days=2), "latency_ms": 1e6, "status": 503}
    async with engine.begin() as conn:
        await conn.execute(insert(RequestEvent), [*rows, old])
    log = RequestLog(engine)

    by_variant = await log.by_variant(60)
    groups = grouped(rows, lambda r: r["variant"] or "unknown")
    assert set(by_variant) == set(groups)
    for variant, items in groups.items():
        got = by_variant[variant]
        assert without_mean({k: got[k] for k in ("requests", "errors", "error_rate", "latency_ms")}) == expected(items)
        assert got["latency_ms"]["mean"] == pytest.approx(statistics.fmean(r["latency_ms"] for r in items), abs=0.01)
        qualities = [r["quality"] for r in items if r.get("quality") is not None]
        assert got["quality_samples"] == len(qualities)
        assert got["quality"] == (round(statistics.fmean(qualities), 4) if qualities else None)
    assert by_variant["new"]["latency_ms"]["p95"] == 19.0 and by_variant["ties"]["latency_ms"]["p50"] == 5.0

    searches = await log.by_variant(60, endpoints=("/api/v1/search",))
    assert set(searches) == {"new", "legacy"} and searches["new"]["requests"] == 20

    window = await log.window(60)
    assert without_mean(window["total"]) == expected(rows)
    endpoints = grouped(rows, lambda r: f"{r['method']} {r['endpoint']}")
    assert {k: without_mean(v) for k, v in window["by_endpoint"].items()} == \
        {k: expected(v) for k, v in endpoints.items()}
    strategies = grouped(rows, lambda r: r.get("strategy"))
    assert {k: without_mean(v) for k, v in window["by_strategy"].items()} == \
        {k: expected(v) for k, v in strategies.items()}

    assert await log.llm_usage(60) == [{"provider": "gemini", "model": "flash", "variant": "new", "requests": 2,
                                        "input_tokens": 200, "output_tokens": 40, "cost_usd": 0.0002,
                                        "mean_latency_ms": 300.0}]
    empty = (await log.window(1e-4))["total"]  # the last 6 ms: no events
    assert empty == {"requests": 0, "errors": 0, "error_rate": 0.0,
                     "latency_ms": {"p50": 0.0, "p95": 0.0, "p99": 0.0, "mean": 0.0}}

    # A request without a valid key shows in the totals, never where decisions are made.
    async with engine.begin() as conn:
        await conn.execute(insert(RequestEvent), [{**rows[0], "ts": utcnow(), "status": 500, "authenticated": False}])
    assert await log.by_variant(60) == by_variant
    assert without_mean((await log.window(60, authenticated_only=True))["total"]) == expected(rows)
    assert (await log.window(60))["total"]["requests"] == len(rows) + 1
    await engine.dispose()


@pytest.fixture
def sqlite_settings(tmp_path):
    from apps.core.migrations import upgrade

    url = f"sqlite+aiosqlite:///{tmp_path / 'metrics.db'}"
    upgrade(url)
    return load_settings(database_url=url)


JSON_VIEWS = [("/metrics", {"minutes": 60}, {}), ("/metrics", {}, {"Accept": "application/json"}),
              ("/metrics/health", {}, {}), ("/metrics/llm-cost", {}, {})]


async def test_only_the_prometheus_text_is_open_by_default(sqlite_settings) -> None:
    async with api_client(sqlite_settings) as api:
        text = await api.client.get("/metrics")
        assert text.status_code == 200 and text.headers["content-type"].startswith("text/plain")
        for path, params, headers in JSON_VIEWS:
            assert (await api.client.get(path, params=params, headers=headers)).status_code == 401, path
            assert (await api.client.get(path, params=params, headers={**headers, "X-API-Key": "dtr_x_y"})
                    ).status_code == 401, path
            ok = await api.client.get(path, params=params, headers={**headers, **api.headers("read")})
            assert ok.status_code == 200 and ok.headers["content-type"] == "application/json", path


async def test_metrics_require_key_also_closes_the_prometheus_text(sqlite_settings) -> None:
    locked = sqlite_settings.model_validate({**sqlite_settings.model_dump(), "metrics_require_key": True})
    async with api_client(locked) as api:
        assert (await api.client.get("/metrics")).status_code == 401
        assert (await api.client.get("/metrics", headers=api.headers("read"))).status_code == 200
        for path, params, headers in JSON_VIEWS:
            assert (await api.client.get(path, params=params, headers=headers)).status_code == 401, path


@pytest.mark.parametrize(("path", "limit", "scope"), [
    ("/metrics", 1440, "read"), ("/metrics/health", 1440, "read"), ("/metrics/llm-cost", 44640, "read"),
    ("/api/v1/admin/metrics", 1440, "admin"),
])
async def test_windows_are_capped(sqlite_settings, path: str, limit: int, scope: str) -> None:
    async with api_client(sqlite_settings) as api:
        headers = api.headers(scope)
        assert (await api.client.get(path, params={"minutes": limit}, headers=headers)).status_code == 200
        beyond = await api.client.get(path, params={"minutes": limit + 1}, headers=headers)
        assert beyond.status_code == 422 and beyond.headers["content-type"].startswith("application/problem+json")
        assert "minutes" in beyond.text and str(limit) in beyond.text
