"""State shared by workers: two app instances (as two workers) on one database, with and without Redis."""

from __future__ import annotations

from contextlib import AsyncExitStack

import pytest

from apps.core.api_keys import Scope
from tests.support.api import api_client
from tests.support.corpus import corpus
from tests.support.redis_server import RedisServer


@pytest.fixture(scope="session")
def redis_server():
    server = RedisServer()
    yield server
    server.stop()


@pytest.fixture(params=["no-redis", "redis"])
async def workers(request, settings):
    if request.param == "redis":
        server = request.getfixturevalue("redis_server")
        import redis

        redis.Redis.from_url(server.url).flushall()
        settings = settings.model_copy(update={"redis_url": server.url})
    async with AsyncExitStack() as stack:
        first = await stack.enter_async_context(api_client(settings))
        second = await stack.enter_async_context(api_client(settings))
        yield first, second


async def test_rate_limit_is_shared_across_workers(workers) -> None:
    a, b = workers
    _, key = await a.runtime.keys.create(Scope.read, rate_limit_per_minute=4)
    h = {"X-API-Key": key}
    statuses = [(await (a if i % 2 else b).client.get("/api/v1/documents", headers=h)).status_code for i in range(6)]
    assert statuses == [200, 200, 200, 200, 429, 429]
    assert int((await a.client.get("/api/v1/documents", headers=h)).headers["Retry-After"]) >= 1


async def test_revocation_reaches_every_worker(workers) -> None:
    a, b = workers
    created = (await a.client.post("/api/v1/admin/api-keys/", headers=a.headers(), json={"scope": "read"})).json()
    h = {"X-API-Key": created["api_key"]}
    assert (await b.client.get("/api/v1/documents", headers=h)).status_code == 200
    assert (await a.client.delete(f"/api/v1/admin/api-keys/{created['id']}", headers=a.headers())).status_code == 204
    assert (await b.client.get("/api/v1/documents", headers=h)).status_code == 401


async def test_cache_is_invalidated_on_every_worker(workers) -> None:
    a, b = workers
    await a.runtime.ingestion.ingest(corpus())
    q = {"q": "kimchi fermented cabbage", "final_topk": 2}
    h = a.headers()
    first = (await a.client.post("/api/v1/search", headers=h, json=q)).json()
    from_b = (await b.client.post("/api/v1/search", headers=h, json=q)).json()
    shared = a.runtime.redis is not None
    assert from_b["cached"] is shared  # Redis shares entries; local caches do not
    assert (await b.client.post("/api/v1/search", headers=h, json=q)).json()["cached"]
    # a write through worker A invalidates worker B's cache
    r = await a.client.post("/api/v1/documents?wait=true", headers=h, json={"title": "Kimchi", "text": "Kimchi is fermented cabbage."})
    assert r.status_code == 201
    after = (await b.client.post("/api/v1/search", headers=h, json=q)).json()
    assert not after["cached"] and after["hits"][0]["title"] == "Kimchi" != first["hits"][0]["title"]
    # so does a cache clear
    assert (await b.client.post("/api/v1/search", headers=h, json=q)).json()["cached"]
    await a.client.post("/admin/cache/clear", headers=h)
    assert not (await b.client.post("/api/v1/search", headers=h, json=q)).json()["cached"]


async def test_health_reports_redis(workers) -> None:
    a, _ = workers
    body = (await a.client.get("/health")).json()
    assert body["redis"] == ("connected" if a.runtime.redis is not None else "not_configured")
    assert body["status"] == "healthy"


async def test_redis_outage_degrades_health_but_not_search(settings) -> None:
    from tests.support.redis_server import free_port

    async with api_client(settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{free_port()}/0"})) as api:
        await api.runtime.ingestion.ingest(corpus()[:2])
        body = (await api.client.get("/health")).json()
        assert body["status"] == "degraded" and body["redis"] == "error" and body["database"] == "connected"
        r = await api.client.post("/api/v1/search", headers=api.headers(), json={"q": "machine learning"})
        assert r.status_code == 200 and r.json()["hits"]
