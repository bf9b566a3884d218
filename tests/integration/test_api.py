"""The HTTP API through the ASGI app, on both backends."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta

import pytest

from apps.core.api_keys import Scope
from tests.support.api import Api, api_client
from tests.support.corpus import corpus

PROBLEM = "application/problem+json"


@pytest.fixture
async def api(settings):
    async with api_client(settings) as client:
        yield client


@pytest.fixture
async def loaded(api: Api) -> Api:
    await api.runtime.ingestion.ingest(corpus())
    return api


def assert_problem(response, status: int, fragment: str = "") -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body = response.json()
    assert body["status"] == status and body["detail"] and body["request_id"]
    assert fragment in body["detail"], body["detail"]
    assert "Traceback" not in response.text
    return body


async def count_documents(api: Api) -> int:
    r = await api.client.get("/api/v1/documents", headers=api.headers("read"))
    return r.json()["total"]


# --- search ---------------------------------------------------------------------------------------

async def test_runbook_search_call(loaded: Api) -> None:
    for path in ("/api/v1/search/", "/api/v1/search"):
        r = await loaded.client.post(path, headers={**loaded.headers("read"), "Content-Type": "application/json"},
                                     content='{"q":"machine learning","final_topk":5}')
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["hits"] and body["hits"][0]["title"] == "Machine learning"
        assert set(body) >= {"hits", "strategy", "latency_ms", "request_id", "total_candidates", "degraded"}
        hit = body["hits"][0]
        assert set(hit) >= {"chunk_id", "doc_id", "score", "text", "title", "source_url", "taxonomy_path", "ranks"}
        assert set(hit["ranks"]) == {"bm25", "dense"}
        assert r.headers["X-Request-ID"] == body["request_id"]


async def test_search_strategy_and_filters(loaded: Api) -> None:
    h = loaded.headers("read")
    r = await loaded.client.post("/api/v1/search", headers=h, json={"q": "bone", "strategy": "bm25", "final_topk": 3})
    assert r.json()["strategy"] == "bm25" and r.json()["hits"][0]["title"] == "Vitamin D"
    r = await loaded.client.post("/api/v1/search", headers=h, json={
        "q": "learning", "final_topk": 10, "filters": {"taxonomy_path": ["tech"], "language": "ko"}})
    assert {x["title"] for x in r.json()["hits"]} == {"기계 학습"}
    r = await loaded.client.post("/api/v1/search", headers=h, json={
        "q": "learning", "final_topk": 10, "filters": {"metadata": {"team": "platform"}}})
    assert {x["title"] for x in r.json()["hits"]} == {"Relational databases", "Air quality"}


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        ({"q": ""}, 422, "q:"),
        ({"q": "   "}, 422, "must not be blank"),
        ({"q": "x", "final_topk": 0}, 422, "final_topk"),
        ({"q": "x", "final_topk": 1000}, 422, "final_topk"),
        ({"q": 5}, 422, "q:"),
        ({"q": "x", "final_topk": "many"}, 422, "final_topk"),
        ({"q": "x", "strategy": "magic"}, 422, "unknown strategy 'magic'"),
        ({"q": "x", "filters": {"language": "fr"}}, 422, "filters.language"),
        ({"q": "x", "filters": {"metadata": {"bad key!": 1}}}, 422, "metadata key"),
        ({"q": "x", "surprise": 1}, 422, "surprise"),
        ({}, 422, "q: Field required"),
        ({"q": "bad \udb67 text"}, 422, "valid string"),  # a lone surrogate is not text
    ],
)
async def test_search_bad_input(loaded: Api, body, status, fragment) -> None:
    # json.dumps escapes lone surrogates as \uXXXX, as a buggy client would send them
    headers = {**loaded.headers("read"), "Content-Type": "application/json"}
    r = await loaded.client.post("/api/v1/search", headers=headers, content=json.dumps(body))
    assert_problem(r, status, fragment)


async def test_malformed_json_and_unknown_routes(api: Api) -> None:
    r = await api.client.post("/api/v1/search", headers={**api.headers(), "Content-Type": "application/json"},
                              content="{bad json")
    assert_problem(r, 400, "malformed JSON")
    assert_problem(await api.client.get("/nope"), 404, "no route GET /nope")
    assert_problem(await api.client.delete("/api/v1/search", headers=api.headers()), 405)


# --- auth and limits ------------------------------------------------------------------------------

async def test_auth_errors(loaded: Api) -> None:
    c = loaded.client
    body = {"q": "x"}
    assert_problem(await c.post("/api/v1/search", json=body), 401, "missing X-API-Key")
    assert_problem(await c.post("/api/v1/search", json=body, headers={"X-API-Key": "dtr_nope_nope"}), 401, "invalid")
    forged = loaded.keys["admin"][:-4] + "AAAA"
    assert_problem(await c.post("/api/v1/search", json=body, headers={"X-API-Key": forged}), 401)
    r = await c.post("/api/v1/documents", json={"text": "t"}, headers=loaded.headers("read"))
    assert_problem(r, 403, "needs 'write'")
    r = await c.get("/api/v1/admin/api-keys/", headers=loaded.headers("write"))
    assert_problem(r, 403, "needs 'admin'")


async def test_revocation_and_expiry_take_effect_at_once(loaded: Api) -> None:
    c = loaded.client
    r = await c.post("/api/v1/admin/api-keys/", headers=loaded.headers(), json={"scope": "read", "name": "temp"})
    assert r.status_code == 201
    created = r.json()
    assert created["api_key"].startswith("dtr_") and len(created["api_key"]) > 40
    key = {"X-API-Key": created["api_key"]}
    assert (await c.post("/api/v1/search", headers=key, json={"q": "x"})).status_code == 200
    listed = (await c.get("/api/v1/admin/api-keys/", headers=loaded.headers())).json()
    assert created["id"] in {k["id"] for k in listed} and all("api_key" not in k for k in listed)
    assert (await c.delete(f"/api/v1/admin/api-keys/{created['id']}", headers=loaded.headers())).status_code == 204
    assert_problem(await c.post("/api/v1/search", headers=key, json={"q": "x"}), 401)
    assert_problem(await c.delete("/api/v1/admin/api-keys/unknown", headers=loaded.headers()), 404)
    _, expiring = await loaded.runtime.keys.create(Scope.read, expires_in=timedelta(seconds=1))
    assert (await c.post("/api/v1/search", headers={"X-API-Key": expiring}, json={"q": "x"})).status_code == 200
    await asyncio.sleep(1.2)
    assert_problem(await c.post("/api/v1/search", headers={"X-API-Key": expiring}, json={"q": "x"}), 401)


async def test_rate_limit_per_key(api: Api) -> None:
    _, tight = await api.runtime.keys.create(Scope.read, rate_limit_per_minute=3)
    statuses = [(await api.client.get("/api/v1/documents", headers={"X-API-Key": tight})).status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    r = await api.client.get("/api/v1/documents", headers={"X-API-Key": tight})
    assert_problem(r, 429, "rate limit of 3 requests a minute")
    assert int(r.headers["Retry-After"]) >= 1
    # normal use with the default limit never trips it
    for _ in range(100):
        assert (await api.client.get("/api/v1/documents", headers=api.headers("read"))).status_code == 200


# --- documents ------------------------------------------------------------------------------------

async def test_document_lifecycle(api: Api) -> None:
    c, h = api.client, api.headers("write")
    r = await c.post("/api/v1/documents?wait=true", headers=h, json={
        "title": "Kimchi", "text": "Kimchi is fermented cabbage. It is a staple of Korean cuisine.",
        "taxonomy_path": ["food", "korean"], "metadata": {"source": "wiki"}})
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["status"] == "created" and created["chunks"] == 1
    doc_id = created["document_id"]
    again = await c.post("/api/v1/documents?wait=true", headers=h, json={
        "title": "Kimchi", "text": "Kimchi is fermented cabbage. It is a staple of Korean cuisine.",
        "taxonomy_path": ["food", "korean"], "metadata": {"source": "wiki"}})
    assert again.status_code == 200 and again.json() == {**created, "status": "unchanged"}
    doc = (await c.get(f"/api/v1/documents/{doc_id}", headers=h)).json()
    assert doc["title"] == "Kimchi" and doc["taxonomy_path"] == "food/korean" and doc["metadata"] == {"source": "wiki"}
    chunks = (await c.get(f"/api/v1/documents/{doc_id}/chunks", headers=h)).json()
    assert chunks[0]["ordinal"] == 0 and "fermented" in chunks[0]["text"]
    page = (await c.get("/api/v1/documents?limit=1&offset=0", headers=h)).json()
    assert page["total"] == 1 and page["items"][0]["id"] == doc_id
    tree = (await c.get("/api/v1/taxonomy/tree", headers=h)).json()
    assert tree[0]["name"] == "food" and tree[0]["document_count"] == 1
    assert tree[0]["children"][0]["path"] == "food/korean"
    hits = (await c.post("/api/v1/search", headers=h, json={"q": "fermented cabbage"})).json()["hits"]
    assert hits[0]["doc_id"] == doc_id
    assert (await c.delete(f"/api/v1/documents/{doc_id}", headers=h)).status_code == 204
    assert_problem(await c.get(f"/api/v1/documents/{doc_id}", headers=h), 404, "no document")
    assert_problem(await c.delete(f"/api/v1/documents/{doc_id}", headers=h), 404)
    assert (await c.post("/api/v1/search", headers=h, json={"q": "fermented cabbage"})).json()["hits"] == []


async def test_file_upload(api: Api) -> None:
    c, h = api.client, api.headers("write")
    files = {"file": ("guide.md", b"# Deploy guide\n\nRun the migrations before starting the server.", "text/markdown")}
    r = await c.post("/api/v1/documents?wait=true", headers=h, files=files,
                     data={"taxonomy_path": "ops/deploy", "metadata": json.dumps({"team": "sre"})})
    assert r.status_code == 201, r.text
    doc = (await c.get(f"/api/v1/documents/{r.json()['document_id']}", headers=h)).json()
    assert doc["title"] == "Deploy guide" and doc["content_type"] == "text/markdown" and doc["taxonomy_path"] == "ops/deploy"


@pytest.mark.parametrize(
    ("kwargs", "status", "fragment"),
    [
        ({"files": {"file": ("notes.docx", b"PK\x03\x04", "application/octet-stream")}}, 422, "notes.docx: unsupported"),
        ({"files": {"file": ("empty.txt", b"   ", "text/plain")}}, 422, "empty.txt: contains no text"),
        ({"files": {"file": ("bad.pdf", b"%PDF-1.4 nope", "application/pdf")}}, 422, "bad.pdf: not a readable PDF"),
        ({"files": {"file": ("a.txt", b"ok", "text/plain")}, "data": {"metadata": "[1]"}}, 422, "metadata"),
        ({"files": {"title": (None, "no file")}}, 422, "file: a file field is required"),
        ({"data": {"title": "form, not multipart"}}, 415, "multipart/form-data"),
        ({"json": {"text": "   "}}, 422, "text: Value error, must not be blank"),
        ({"json": {"text": "x", "taxonomy_path": ["a/b"]}}, 422, "taxonomy"),
        ({"json": {"title": "no text"}}, 422, "text: Field required"),
        ({"content": b"{oops", "headers": {"Content-Type": "application/json"}}, 400, "malformed JSON"),
        ({"content": b"text", "headers": {"Content-Type": "text/plain"}}, 415, "application/json"),
    ],
)
async def test_bad_documents_write_nothing(api: Api, kwargs, status, fragment) -> None:
    kwargs = dict(kwargs)  # parametrized values are shared between backends
    headers = {**api.headers("write"), **kwargs.pop("headers", {})}
    r = await api.client.post("/api/v1/documents?wait=true", headers=headers, **kwargs)
    assert_problem(r, status, fragment)
    assert await count_documents(api) == 0


async def test_oversize_body_is_413(settings) -> None:
    async with api_client(settings.model_copy(update={"max_request_bytes": 2048})) as api:
        r = await api.client.post("/api/v1/documents", headers=api.headers("write"), json={"text": "x" * 5000})
        assert_problem(r, 413, "2,048-byte limit")
        assert await count_documents(api) == 0


async def test_idempotency_key(api: Api) -> None:
    c = api.client
    h = {**api.headers("write"), "Idempotency-Key": "req-42"}
    body = {"title": "Tea", "text": "Green tea is unoxidised.", "external_id": "tea"}
    first = await c.post("/api/v1/documents?wait=true", headers=h, json=body)
    second = await c.post("/api/v1/documents?wait=true", headers=h, json=body)
    assert first.status_code == second.status_code == 201
    assert first.json() == second.json() and second.headers.get("Idempotent-Replayed") == "true"
    conflict = await c.post("/api/v1/documents?wait=true", headers=h, json={**body, "text": "Black tea is oxidised."})
    assert_problem(conflict, 422, "different request body")
    assert await count_documents(api) == 1
    doc = (await c.get(f"/api/v1/documents/{first.json()['document_id']}/chunks", headers=h)).json()
    assert "unoxidised" in doc[0]["text"]  # the conflicting body was not applied


# --- cache, health, admin, OpenAPI ----------------------------------------------------------------

async def test_search_cache_is_invalidated_by_writes_and_clear(loaded: Api) -> None:
    c, h = loaded.client, loaded.headers()
    q = {"q": "fermented cabbage kimchi", "final_topk": 3}
    first = (await c.post("/api/v1/search", headers=h, json=q)).json()
    second = (await c.post("/api/v1/search", headers=h, json=q)).json()
    assert not first["cached"] and second["cached"] and second["hits"] == first["hits"]
    await c.post("/api/v1/documents?wait=true", headers=h, json={"title": "Kimchi", "text": "Kimchi is fermented cabbage."})
    after = (await c.post("/api/v1/search", headers=h, json=q)).json()
    assert not after["cached"] and after["hits"][0]["title"] == "Kimchi"
    assert (await c.post("/api/v1/search", headers=h, json=q)).json()["cached"]
    for path in ("/admin/cache/clear", "/api/v1/admin/cache/clear"):
        assert (await c.post(path, headers=h)).json() == {"cleared": True}
        assert not (await c.post("/api/v1/search", headers=h, json=q)).json()["cached"]
    assert_problem(await c.post("/admin/cache/clear", headers=loaded.headers("write")), 403)


async def test_health(loaded: Api) -> None:
    r = await loaded.client.get("/health")
    body = r.json()
    assert r.status_code == 200 and body["status"] == "healthy" and body["database"] == "connected"
    assert body["redis"] == "not_configured" and body["version"] and body["environment"] == "development"
    detailed = (await loaded.client.get("/health?detailed=true")).json()
    assert detailed["corpus"] == {"documents": 6, "chunks": 6}
    assert detailed["alembic_revision"] and "e5-small" in detailed["embedding_model"]
    assert detailed["flags"]["soft_q_bandit"]["enabled"] is False and detailed["latency_ms"]["database"] >= 0


async def test_health_when_database_is_unreachable(tmp_path) -> None:
    from apps.core.config import load_settings

    settings = load_settings(database_url="postgresql+asyncpg://nobody@127.0.0.1:1/none")
    import httpx

    from apps.api.main import create_app

    app = create_app(settings)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
            r = await client.get("/health")
            assert r.status_code == 503 and r.json()["status"] == "unhealthy" and r.json()["database"] == "error"
            r = await client.post("/api/v1/search", headers={"X-API-Key": "dtr_a_b"}, json={"q": "x"})
            assert r.status_code == 503 and r.headers["content-type"].startswith(PROBLEM)
            assert "nobody" not in r.text and "Traceback" not in r.text


async def test_admin_metrics_from_shared_events(loaded: Api) -> None:
    c, h = loaded.client, loaded.headers()
    for strategy in ("bm25", "dense"):
        await c.post("/api/v1/search", headers=h, json={"q": "bone", "strategy": strategy})
    await c.post("/api/v1/search", headers=h, json={"q": ""})
    m = (await c.get("/api/v1/admin/metrics?minutes=60", headers=h)).json()
    assert "POST /api/v1/search" in m["by_endpoint"], m
    search = m["by_endpoint"]["POST /api/v1/search"]
    assert search["requests"] == 3 and search["error_rate"] == 0.0
    assert set(search["latency_ms"]) >= {"p50", "p95", "p99"}
    assert m["by_strategy"]["bm25"]["requests"] == 1 and m["by_strategy"]["dense"]["requests"] == 1
    assert_problem(await c.get("/api/v1/admin/metrics?minutes=0", headers=h), 422, "minutes")


async def test_openapi_describes_routes_and_auth(api: Api) -> None:
    spec = (await api.client.get("/api/v1/openapi.json")).json()
    assert spec["openapi"].startswith("3.")
    for path in ("/api/v1/search", "/api/v1/documents", "/api/v1/documents/{document_id}",
                 "/api/v1/documents/{document_id}/chunks", "/api/v1/taxonomy/tree", "/api/v1/admin/api-keys/",
                 "/api/v1/admin/metrics", "/api/v1/admin/cache/clear", "/admin/cache/clear", "/health"):
        assert path in spec["paths"], path
    assert spec["components"]["securitySchemes"]["APIKeyHeader"]["name"] == "X-API-Key"
    assert spec["paths"]["/api/v1/search"]["post"]["security"] == [{"APIKeyHeader": []}]
    assert "multipart/form-data" in spec["paths"]["/api/v1/documents"]["post"]["requestBody"]["content"]
    docs = await api.client.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
