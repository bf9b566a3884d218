"""Issue 21, pinned: traffic without a key cannot steer a rollout, refused bodies are recorded as what
they were and bounded as a whole, filters are capped, errors say what failed and never how, the
database rate limiter survives skewed clocks, pages carry a CSP, and the admin cleanup reaches every
worker. Storage is involved in each, so each runs on both backends."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import OperationalError

from apps.core.admin_actions import AdminActions
from apps.core.config import load_settings
from apps.core.db import create_engine
from apps.core.models import RequestEvent
from apps.core.rate_limit import DatabaseRateLimiter
from apps.search.embeddings.base import EmbeddingError
from tests.support.api import Api, api_client
from tests.support.corpus import corpus
from tests.support.redis_server import free_port

Receive = Callable[[], Awaitable[dict[str, Any]]]


async def _asgi(api: Api, path: str, headers: dict[str, str], receive: Receive) -> int:
    """One request straight into the app, its body from `receive` (what httpx cannot send: a trickle)."""
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": path, "raw_path": path.encode(), "root_path": "", "query_string": b"",
             "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
             "client": ("127.0.0.1", 50000), "server": ("test", 80)}
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await api.app(scope, receive, send)  # type: ignore[operator]
    return next(m["status"] for m in sent if m["type"] == "http.response.start")


def _trickle(every_s: float) -> Receive:
    """A client that keeps a body coming, a byte at a time, and never finishes it."""
    async def receive() -> dict[str, Any]:
        await asyncio.sleep(every_s)
        return {"type": "http.request", "body": b" ", "more_body": True}
    return receive


def _flood(chunk: int) -> Receive:
    """A chunked body (no Content-Length to refuse it by) that never ends."""
    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"x" * chunk, "more_body": True}
    return receive


async def _events(api: Api, endpoint: str) -> list[RequestEvent]:
    await api.runtime.request_log.flush()
    async with api.runtime.sessions() as session:
        return list((await session.execute(select(RequestEvent).where(RequestEvent.endpoint == endpoint)
                                           .order_by(RequestEvent.id))).scalars())


# --- the canary and the health views --------------------------------------------------------------------

async def test_refused_bodies_are_recorded_as_refused_and_bounded_as_a_whole(settings) -> None:
    settings = settings.model_copy(update={"body_read_timeout_s": 1.0, "max_request_bytes": 4096})
    async with api_client(settings) as api:
        json_body = {"content-type": "application/json", "content-length": "1000"}
        start = time.monotonic()
        # A byte every 0.2 s never leaves a 1 s silence, yet the whole body must arrive within 1 s.
        status = await asyncio.wait_for(_asgi(api, "/api/v1/search", json_body, _trickle(0.2)), 8)
        assert status == 408 and 0.9 < time.monotonic() - start < 4
        assert await _asgi(api, "/api/v1/search", {"content-type": "application/json"}, _flood(1500)) == 413
        events = await _events(api, "/api/v1/search")
        assert [e.status for e in events] == [408, 413]  # not the 500 the client never got
        assert not any(e.authenticated for e in events)  # refused before any key was looked at
        assert events[0].latency_ms < 4000


async def test_traffic_without_a_key_cannot_steer_the_canary(settings) -> None:
    # The body deadline bounds the stalled bodies below; at 0.3 s a loaded machine also cut short the 401s' bodies.
    settings = settings.model_validate({**settings.model_dump(), "body_read_timeout_s": 2.0, "max_request_bytes": 2048,
                                        "canary_window_s": 600, "canary_promotion_steps": "0.5,1.0",
                                        "canary_promotion_intervals": 1})
    async with api_client(settings) as api:
        await api.runtime.ingestion.ingest(corpus())
        put = await api.client.put("/api/v1/admin/feature-flags/new_pipeline", headers=api.headers(),
                                   json={"rollout_fraction": 0.2, "user_ids": ["mallory"], "reason": "canary"})
        assert put.status_code == 200
        as_new = {"content-type": "application/json", "x-user-id": "mallory"}  # the allowlist puts her on `new`
        # Stalled and endless bodies on the canary's route, as `new`: once recorded as slow 500s.
        statuses = await asyncio.gather(*(_asgi(api, "/api/v1/search", {**as_new, "content-length": "500"},
                                                _trickle(1.0)) for _ in range(12)),
                                        *(_asgi(api, "/api/v1/search", as_new, _flood(1024)) for _ in range(12)))
        assert sorted(set(statuses)) == [408, 413]
        held = await api.runtime.canary.tick()
        assert held is not None and held["verdict"] == "hold", held  # nothing with a key yet
        assert api.runtime.flags.config("new_pipeline").rollout == 0.2
        health = (await api.client.get("/metrics/health", headers=api.headers("read"))).json()
        assert health["checks"]["error_rate"]["value"] == 0 and health["status"] != "critical"

        # A real failure of `new` (one search in twenty) must not be diluted by a flood of fast 401s.
        original = api.runtime.bandit.retrieve
        served = {"new": 0}

        async def flaky(*args: Any, **kwargs: Any) -> Any:
            if kwargs.get("variant") == "new":
                served["new"] += 1
                if served["new"] % 20 == 0:
                    raise RuntimeError("the new pipeline's bug")
            return await original(*args, **kwargs)

        api.runtime.bandit.retrieve = flaky  # type: ignore[method-assign]
        transport = httpx.ASGITransport(app=api.app, raise_app_exceptions=False)  # a real server answers 500
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            outcomes = [(await client.post("/api/v1/search", headers={**api.headers("read"), "X-User-Id": "mallory"},
                                           json={"q": f"vitamin D {i}"})).status_code for i in range(40)]
            assert outcomes.count(500) == 2
            for i in range(400):
                r = await client.post("/api/v1/search", headers={"X-User-Id": "mallory"}, json={"q": f"x {i}"})
                assert r.status_code == 401
        verdict = await api.runtime.canary.tick()
        assert verdict["verdict"] == "breach" and verdict["action"] == "rolled_back", verdict
        assert verdict["detail"]["canary"]["requests"] == 40
        assert any("error rate 0.05" in reason for reason in verdict["detail"]["reasons"])
        assert api.runtime.flags.config("new_pipeline").rollout == 0.0


# --- filters and what errors say ----------------------------------------------------------------------------

async def test_metadata_filters_are_capped_before_any_sql(settings) -> None:
    async with api_client(settings) as api:
        await api.runtime.ingestion.ingest(corpus())
        read = api.headers("read")

        async def search(metadata: dict[str, Any], route: str = "/api/v1/search") -> httpx.Response:
            body = {"q": "vitamin D", "filters": {"metadata": metadata}}
            return await api.client.post(route, headers=read, json=body)

        for route in ("/api/v1/search", "/answer"):
            wide = await search({f"k{i}": "v" for i in range(1000)}, route)
            assert wide.status_code == 422, wide.text
            assert "at most 32 (SEARCH_MAX_METADATA_FILTERS)" in wide.json()["detail"]
            assert wide.json()["errors"][0]["field"] == "filters"
        long = await search({"team": "r" * 257})
        assert long.status_code == 422 and "SEARCH_MAX_FILTER_VALUE_CHARS" in long.json()["detail"]
        huge = await search({"year": 2**70})
        assert huge.status_code == 422 and "64-bit" in huge.json()["detail"]
        at_cap = await search({"team": "research", **{f"k{i}": "v" for i in range(31)}})
        assert at_cap.status_code == 200 and at_cap.json()["hits"] == []  # no document has k0..k30
        ok = await search({"team": "research"})
        assert ok.status_code == 200 and {h["doc_id"] for h in ok.json()["hits"]}
        tighter = settings.model_copy(update={"search_max_metadata_filters": 1})
        api.runtime.search.settings = tighter  # the cap is a setting
        assert (await search({"team": "research", "year": 2022})).status_code == 422
        widest = settings.model_copy(update={"search_max_metadata_filters": 256})  # the most the setting allows
        api.runtime.search.settings = widest
        assert (await search({f"k{i}": "v" for i in range(256)})).status_code == 200  # within SQLite's depth


async def test_failures_say_what_failed_never_the_internals(settings, monkeypatch) -> None:
    async with api_client(settings) as api:
        await api.runtime.ingestion.ingest(corpus())
        read = api.headers("read")

        async def unreachable(*args: Any) -> Any:
            raise EmbeddingError("embedding server http://dt:hunter2@gpu-replica-7:8080/v1 unreachable: ConnectError()")

        monkeypatch.setattr(api.runtime.search.embedder, "embed_query", unreachable)
        degraded = await api.client.post("/api/v1/search", headers=read,
                                         json={"q": "bone loss", "strategy": "hybrid_rrf"})
        assert degraded.status_code == 200 and degraded.json()["degraded"]
        assert degraded.json()["degraded_reasons"] == ["dense leg failed: the embedding service did not answer usably"]
        answered = await api.client.post("/answer", headers=read, json={"q": "What causes bone loss?",
                                                                         "strategy": "hybrid_rrf"})
        assert answered.status_code == 200 and "gpu-replica-7" not in answered.text

        async def refused(*args: Any) -> Any:
            raise OperationalError("SELECT c.id FROM chunks_fts WHERE chunks_fts MATCH ?", ("x",),
                                   Exception("Expression tree is too large (maximum depth 1000)"))

        monkeypatch.setattr(api.runtime.search.store, "bm25", refused)
        down = await api.client.post("/api/v1/search", headers=read, json={"q": "bone", "strategy": "hybrid_rrf"})
        assert down.status_code == 503 and down.headers["content-type"] == "application/problem+json"
        assert down.json()["detail"] == ("search is unavailable: bm25 leg failed: the database did not answer; "
                                         "dense leg failed: the embedding service did not answer usably")
        for response in (degraded, down):
            for secret in ("hunter2", "gpu-replica-7", "SELECT", "chunks_fts", "Expression tree"):
                assert secret not in response.text, (secret, response.text)


async def test_detailed_health_names_no_host_and_no_credential(settings) -> None:
    port = free_port()  # nothing listens there
    unreachable = settings.model_copy(update={"redis_url": f"redis://dtrag:s3cret-pw@127.0.0.1:{port}/0"})
    async with api_client(unreachable) as api:
        response = await api.client.get("/health", params={"detailed": "true"})
        body = response.json()
        assert body["redis"] == "error" and body["job_queue"]["redis"] == "error"
        assert body["job_queue"]["error"] == "the job queue (Redis) is unreachable"
        for secret in ("s3cret-pw", f"127.0.0.1:{port}", f":{port}", "Connection refused"):
            assert secret not in response.text, (secret, response.text)


# --- the database rate limiter -------------------------------------------------------------------------------

async def test_a_clock_ahead_neither_drains_nor_locks_the_bucket(database_url: str) -> None:
    engine = create_engine(load_settings(database_url=database_url))
    limiter = DatabaseRateLimiter(engine)
    try:
        assert (await limiter.hit("key-1", 60)).allowed
        # Another host, its clock an hour ahead, stamped the bucket last.
        async with engine.begin() as conn:
            await conn.execute(text("UPDATE rate_limit_buckets SET updated_at = updated_at + 3600 "
                                    "WHERE key_id = 'key-1'"))
        after = await limiter.hit("key-1", 60)
        assert after.allowed and 57 <= after.remaining <= 59, after  # no negative refill: 59 left, one spent
        for _ in range(int(after.remaining)):
            assert (await limiter.hit("key-1", 60)).allowed
        denied = await limiter.hit("key-1", 60)
        assert not denied.allowed and denied.retry_after_s <= 2  # refills at the database's pace again
    finally:
        await engine.dispose()


# --- pages ------------------------------------------------------------------------------------------------------

@pytest.fixture
def sqlite_settings(tmp_path):
    from apps.core.migrations import upgrade

    url = f"sqlite+aiosqlite:///{tmp_path / 'pages.db'}"
    upgrade(url)
    return load_settings(database_url=url)


async def test_pages_carry_a_content_security_policy_and_refuse_framing(sqlite_settings) -> None:
    async with api_client(sqlite_settings) as api:
        page = await api.client.get("/dashboard")
        assert page.status_code == 200
        policy = page.headers["content-security-policy"]
        assert "default-src 'self'" in policy and "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
        assert "unsafe-inline" not in policy
        assert page.headers["x-frame-options"] == "DENY" and page.headers["x-content-type-options"] == "nosniff"
        assert "<script>" not in page.text and " style=" not in page.text  # nothing inline for the CSP to refuse
        script = await api.client.get("/dashboard/static/dashboard.js")
        assert 'setAttribute("style"' not in script.text and "style: `" not in script.text
        docs = await api.client.get("/docs")  # Swagger UI comes from its CDN: framing rules only
        assert docs.headers["content-security-policy"] == "frame-ancestors 'none'"
        assert docs.headers["x-frame-options"] == "DENY"
        health = await api.client.get("/health")
        assert health.headers["x-content-type-options"] == "nosniff" and "content-security-policy" not in health.headers


# --- admin cleanup -------------------------------------------------------------------------------------------------

async def test_cleanup_clears_every_workers_caches_and_reports_memory(settings) -> None:
    async with api_client(settings) as api:
        await api.runtime.ingestion.ingest(corpus())
        read = api.headers("read")
        query = {"q": "relational database indexes", "strategy": "bm25"}
        await api.client.post("/api/v1/search", headers=read, json=query)
        assert (await api.client.post("/api/v1/search", headers=read, json=query)).json()["cached"]
        analyzer = api.runtime.search.analyzer
        assert analyzer.cached_bytes > 0
        # Another worker of the same service: its own caches, the same database.
        other_cleared: list[int] = []

        async def clear_other() -> dict[str, int]:
            other_cleared.append(1)
            return {"analyzer_cache_bytes": 123}

        other = AdminActions(api.runtime.engine, 0.05, clear_other)
        assert await other.poll() is None  # its first look: nothing to catch up on

        assert (await api.client.post("/api/admin/cleanup", headers=read, json={})).status_code == 403
        assert (await api.client.post("/api/admin/cleanup", headers=api.headers(),
                                      json={"force_gc": "yes please"})).status_code == 422
        done = await api.client.post("/api/admin/cleanup", headers=api.headers(),
                                     json={"force_gc": True, "clear_caches": True})
        assert done.status_code == 200, done.text
        report = done.json()
        [mine] = report["workers"]
        assert mine["worker"].endswith(f":{__import__('os').getpid()}") and mine["caches_cleared"]
        assert mine["freed_cache_bytes"]["analyzer_cache_bytes"] > 0 and mine["gc_collected"] >= 0
        assert mine["rss_mb_before"] > 0 and mine["rss_mb_after"] > 0 and report["rss_mb_before"] > 0
        assert analyzer.cached_bytes == 0
        assert not (await api.client.post("/api/v1/search", headers=read, json=query)).json()["cached"]

        theirs = await other.poll()  # the other worker's next poll applies it, once
        assert theirs is not None and theirs["cleanup_id"] == report["cleanup_id"] and other_cleared == [1]
        assert await other.poll() is None and other_cleared == [1]
        assert len(await api.runtime.admin.reports(report["cleanup_id"])) == 2

        audit = (await api.client.get("/api/v1/admin/actions", headers=api.headers())).json()
        [cleanup] = [a for a in audit if a["action"] == "cleanup"]
        assert cleanup["actor"].startswith("api-key:") and cleanup["detail"] == {"force_gc": True, "clear_caches": True}
        assert sum(a["action"] == "cleanup-report" for a in audit) == 2


async def test_graceful_restart_needs_a_supervisor(sqlite_settings) -> None:
    async with api_client(sqlite_settings) as api:
        assert (await api.client.post("/api/admin/graceful-restart", headers=api.headers("write"))).status_code == 403
        refused = await api.client.post("/api/admin/graceful-restart", headers=api.headers())
        assert refused.status_code == 409 and "--workers 2" in refused.json()["detail"]
        assert (await api.client.post("/api/v1/admin/graceful-restart", headers=api.headers())).status_code == 409


# --- answer graph nodes ----------------------------------------------------------------------------------------

async def test_a_failing_node_names_itself_never_its_exception(settings, monkeypatch, caplog) -> None:
    """An answer whose compose step raised: the client reads the node and a category; the exception's
    text (here a replica URL with its password) reaches neither the JSON nor the stream, and the log
    has the details with the password masked."""
    from apps.llm.base import LLMError

    leaked = "http://dt:hunter2@gpu-replica-7:8080/v1"
    async with api_client(settings) as api:
        await api.runtime.ingestion.ingest(corpus())
        read = api.headers("read")
        provider = api.runtime.pipelines.get().provider
        for exc, reason in ((RuntimeError(f"pool {leaked} closed"), "failed"),
                            (LLMError(f"{leaked} rejected the request (400): bad prompt"),
                             "failed: the model did not answer usably")):

            async def broken(*args: Any, exc: Exception = exc) -> Any:
                raise exc
                yield ""  # an async generator, as `stream` is

            monkeypatch.setattr(provider, "stream", broken)
            caplog.clear()
            answered = await api.client.post("/answer", headers=read, json={"q": "What causes bone loss?"})
            body = answered.json()
            assert answered.status_code == 200 and body["degraded"], answered.text
            assert {"node": "compose", "reason": reason} in body["degraded_nodes"]
            assert body["provider"] == "extractive" and body["answer"]  # the fallback still answered
            streamed = await api.client.post("/answer", headers=read, json={"q": "What causes bone loss?",
                                                                            "stream": True})
            assert streamed.status_code == 200 and reason in streamed.text
            for response in (answered, streamed):
                for secret in ("hunter2", "gpu-replica-7", "RuntimeError", "LLMError", "bad prompt"):
                    assert secret not in response.text, (secret, response.text)
            [logged] = [r for r in caplog.records if r.getMessage() == "pipeline node degraded"
                        and r.__dict__["node"] == "compose" and r.__dict__["request_id"] == body["request_id"]]
            assert "gpu-replica-7" in logged.__dict__["error"] and "hunter2" not in logged.__dict__["error"]
