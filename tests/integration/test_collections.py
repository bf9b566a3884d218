"""Collections and access (SPEC-ACCESS-001), on both backends: two collections with disjoint documents and
keys bound to one of them (one also carrying an access group). Through every door (search legs, the cache,
answers and their citations, streams, debates, documents, taxonomy, jobs, feedback, idempotency keys, the
chat API, MCP, the LangChain retriever) nothing of the other collection, nor of a group the key lacks,
ever reaches a key; a document it may not see is a 404, a collection it may not use a 403."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

import pytest

from apps.core.api_keys import Scope
from apps.core.config import Settings
from apps.integrations.langchain import DtRagRetriever
from tests.support.api import Api, api_client
from tests.support.server import run_cli

QUERY = "vitamin D sunlight bone health"
DOCS = {
    # name: (collection, groups, writer, body)
    "alpha": ("alpha", [], "w_alpha", {
        "external_id": "shared", "title": "Vitamin D alpha", "taxonomy_path": "alpha/health",
        "text": "Vitamin D from sunlight keeps bone health. Alphanote: the alpha team's sunlight study."}),
    "alpha_x": ("alpha", ["x"], "admin", {
        "external_id": "ledger", "title": "Vitamin D ledger", "taxonomy_path": "alpha/finance",
        "text": "Vitamin D budget for bone health. Secretnote: sunlight ledger of group x only."}),
    "beta": ("beta", [], "w_beta", {
        "external_id": "shared", "title": "Vitamin D beta", "taxonomy_path": "beta/health",
        "text": "Vitamin D and sunlight for bone health. Betanote: the beta cohort's findings."}),
}
MARKERS = {"alpha": "alphanote", "alpha_x": "secretnote", "beta": "betanote"}
SEES = {"a": {"alpha"}, "b": {"beta"}, "ax": {"alpha", "alpha_x"}}


@dataclass
class World:
    api: Api
    keys: dict[str, str]  # a, b, ax (read); w_alpha, w_beta (write); admin_alpha; admin
    docs: dict[str, str]  # name -> document id
    chunks: dict[str, set[int]]  # name -> chunk ids
    jobs: dict[str, str]  # name -> ingest job id

    def headers(self, who: str) -> dict[str, str]:
        return {"X-API-Key": self.keys[who]}

    def visible_docs(self, who: str) -> set[str]:
        return {self.docs[n] for n in SEES[who]}

    def visible_chunks(self, who: str) -> set[int]:
        return set().union(*(self.chunks[n] for n in SEES[who]))

    def hidden_markers(self, who: str) -> set[str]:
        return {MARKERS[n] for n in DOCS if n not in SEES[who]}


async def _key(api: Api, scope: Scope, name: str, collections: list[str] | None, groups: list[str] | None = None) -> str:
    return (await api.runtime.keys.create(scope, name=name, collections=collections, groups=groups))[1]


async def _world(api: Api) -> World:
    c, admin = api.client, api.headers("admin")
    for name in ("alpha", "beta"):
        r = await c.post("/api/v1/collections", headers=admin, json={"name": name, "description": f"team {name}"})
        assert r.status_code == 201, r.text
    assert (await c.post("/api/v1/collections", headers=admin, json={"name": "alpha"})).status_code == 409
    keys = {"a": await _key(api, Scope.read, "a", ["alpha"]), "b": await _key(api, Scope.read, "b", ["beta"]),
            "ax": await _key(api, Scope.read, "ax", ["alpha"], ["x"]),
            "w_alpha": await _key(api, Scope.write, "w-alpha", ["alpha"]),
            "w_beta": await _key(api, Scope.write, "w-beta", ["beta"]),
            "admin_alpha": await _key(api, Scope.admin, "admin-alpha", ["alpha"]), "admin": api.keys["admin"]}
    docs, jobs = {}, {}
    for name, (collection, groups, writer, body) in DOCS.items():
        r = await c.post("/api/v1/documents?wait=true", headers={"X-API-Key": keys[writer]},
                         json={**body, "collection": collection, "access_groups": groups})
        assert r.status_code == 201, r.text  # "shared" twice: external ids are unique per collection only
        docs[name] = r.json()["document_id"]
        jobs[name] = r.headers["Location"].rsplit("/", 1)[1]
    chunks = {}
    for name, doc_id in docs.items():
        r = await c.get(f"/api/v1/documents/{doc_id}/chunks", headers=admin)
        chunks[name] = {ch["id"] for ch in r.json()}
    return World(api, keys, docs, chunks, jobs)


@pytest.fixture
async def world(settings: Settings):
    async with api_client(settings) as api:
        yield await _world(api)


def _chunk_ids(value: Any) -> set[int]:
    """Every chunk id anywhere in a response: `chunk_id(s)` fields and the lists under them."""
    found: set[int] = set()
    if isinstance(value, dict):
        for k, v in value.items():
            if k in ("chunk_id", "chunk_ids", "cited", "hits") and isinstance(v, (int, list)):
                found |= {v} if isinstance(v, int) else {i for i in v if isinstance(i, int)}
            found |= _chunk_ids(v)
    elif isinstance(value, list):
        for v in value:
            found |= _chunk_ids(v)
    return found


def _no_marker(text: str, world: World, who: str) -> None:
    lowered = text.lower()
    assert not [m for m in world.hidden_markers(who) if m in lowered], text[:500]


async def test_writes_go_only_where_a_key_may_write(world: World) -> None:
    c = world.api.client
    body = {"text": "Vitamin D note", "external_id": "x1"}
    assert (await c.post("/api/v1/documents", headers=world.headers("w_alpha"),
                         json={**body, "collection": "beta"})).status_code == 403
    assert (await c.post("/api/v1/documents", headers=world.headers("w_alpha"),
                         json={**body, "collection": "alpha", "access_groups": ["x"]})).status_code == 403
    r = await c.post("/api/v1/documents", headers=world.headers("admin"), json={**body, "collection": "nowhere"})
    assert r.status_code == 404 and "nowhere" in r.json()["detail"]
    # Re-posting an external id the key cannot see (group x) never replaces it: the job fails, the doc stays.
    r = await c.post("/api/v1/documents?wait=true", headers=world.headers("w_alpha"),
                     json={"text": "overwritten", "external_id": "ledger", "collection": "alpha"})
    assert r.status_code == 422, r.text
    doc = (await c.get(f"/api/v1/documents/{world.docs['alpha_x']}", headers=world.headers("admin"))).json()
    assert doc["title"] == "Vitamin D ledger" and doc["access_groups"] == ["x"] and doc["collection"] == "alpha"


@pytest.mark.parametrize("strategy", ["bm25", "dense", "hybrid_rrf"])
async def test_search_and_its_cache_show_only_what_a_key_may_see(world: World, strategy: str) -> None:
    c = world.api.client
    for who in ("a", "b", "ax", "a"):  # the same query by each in turn: the cache never answers across views
        r = await c.post("/api/v1/search", headers=world.headers(who),
                         json={"q": QUERY, "final_topk": 10, "strategy": strategy})
        assert r.status_code == 200, r.text
        hits = r.json()["hits"]
        assert {h["doc_id"] for h in hits} == world.visible_docs(who), (who, hits)
        assert {h["collection"] for h in hits} == {"alpha" if who != "b" else "beta"}
        _no_marker(json.dumps(hits), world, who)
    # Narrowed by request: to a collection of its own, fine; to another's, 403; to none that exists, 404.
    r = await c.post("/api/v1/search", headers=world.headers("ax"),
                     json={"q": QUERY, "strategy": strategy, "collections": ["alpha"]})
    assert {h["doc_id"] for h in r.json()["hits"]} == world.visible_docs("ax")
    r = await c.post("/api/v1/search", headers=world.headers("a"), json={"q": QUERY, "collections": ["beta"]})
    assert r.status_code == 403 and "beta" in r.json()["detail"]
    r = await c.post("/api/v1/search", headers=world.headers("admin"), json={"q": QUERY, "collections": ["gamma"]})
    assert r.status_code == 404
    r = await c.post("/api/v1/search", headers=world.headers("admin"),
                     json={"q": QUERY, "strategy": strategy, "final_topk": 10, "collections": ["beta"]})
    assert {h["doc_id"] for h in r.json()["hits"]} == {world.docs["beta"]}


async def test_answers_citations_streams_and_debates_cite_only_visible_chunks(world: World) -> None:
    c = world.api.client
    for who in ("a", "b", "ax"):
        allowed = world.visible_chunks(who)
        for mode in ("answer", "debate"):
            r = await c.post("/answer", headers=world.headers(who), json={"q": QUERY, "mode": mode, "final_topk": 10})
            assert r.status_code == 200, r.text
            body = r.json()
            assert body["sources"] and {s["doc_id"] for s in body["sources"]} <= world.visible_docs(who)
            assert _chunk_ids(body) <= allowed, (who, mode, _chunk_ids(body) - allowed)
            _no_marker(json.dumps(body), world, who)
            if mode == "debate":
                assert body["debate"] is not None and body["debate"]["agents"]
        async with c.stream("POST", "/answer", headers=world.headers(who),
                            json={"q": QUERY, "stream": True, "final_topk": 10}) as r:
            raw = "".join([line async for line in r.aiter_lines()])
        assert "event: final" in raw or '"sources"' in raw
        _no_marker(raw, world, who)
        final = json.loads(raw.rsplit("data: ", 1)[1]) if "data: " in raw else {}
        assert _chunk_ids(final) <= allowed


async def test_documents_taxonomy_and_deletes_hide_what_a_key_may_not_see(world: World) -> None:
    c = world.api.client
    for who in ("a", "b", "ax"):
        listed = (await c.get("/api/v1/documents?limit=200", headers=world.headers(who))).json()
        assert {d["id"] for d in listed["items"]} == world.visible_docs(who) and listed["total"] == len(SEES[who])
        tree = (await c.get("/api/v1/taxonomy/tree", headers=world.headers(who))).json()
        roots = {n["name"]: n["document_count"] for n in tree}
        assert roots == ({"beta": 1} if who == "b" else {"alpha": len(SEES[who])})
        for name, doc_id in world.docs.items():
            got = await c.get(f"/api/v1/documents/{doc_id}", headers=world.headers(who))
            chunks = await c.get(f"/api/v1/documents/{doc_id}/chunks", headers=world.headers(who))
            if name in SEES[who]:
                assert got.status_code == 200 and got.json()["collection"] == DOCS[name][0]
            else:  # 404, not 403: a key learns nothing of what it may not see
                assert got.status_code == chunks.status_code == 404
    # A writer of beta cannot delete alpha's document (404), and it is still there.
    assert (await c.delete(f"/api/v1/documents/{world.docs['alpha']}", headers=world.headers("w_beta"))).status_code == 404
    assert (await c.get(f"/api/v1/documents/{world.docs['alpha']}", headers=world.headers("a"))).status_code == 200
    # Collections: each key lists its own; another's is a 404.
    names = [x["name"] for x in (await c.get("/api/v1/collections", headers=world.headers("a"))).json()]
    assert names == ["alpha"]
    assert (await c.get("/api/v1/collections/beta", headers=world.headers("a"))).status_code == 404
    # Counts are of what the key may see: the group's document is not even counted for a key without it.
    assert (await c.get("/api/v1/collections/alpha", headers=world.headers("ax"))).json()["documents"] == 2
    assert (await c.get("/api/v1/collections/alpha", headers=world.headers("a"))).json()["documents"] == 1


async def test_jobs_feedback_and_idempotency_stay_with_their_key(world: World) -> None:
    c = world.api.client
    beta_job = world.jobs["beta"]
    for who in ("a", "w_alpha", "admin_alpha"):  # another key's job, or (an admin's) another collection's: 404
        assert (await c.get(f"/api/v1/jobs/{beta_job}", headers=world.headers(who))).status_code == 404
        assert (await c.get(f"/api/v1/jobs/{beta_job}/events", headers=world.headers(who))).status_code == 404
        listed = (await c.get("/api/v1/jobs?limit=500", headers=world.headers(who))).json()
        assert beta_job not in {j["job_id"] for j in listed}
    assert (await c.post(f"/api/v1/jobs/{beta_job}/cancel", headers=world.headers("w_alpha"))).status_code == 404
    # The newest job is beta's: a page of one for alpha's admin is still alpha's newest, not an empty page.
    [newest] = (await c.get("/api/v1/jobs?limit=1", headers=world.headers("admin_alpha"))).json()
    assert newest["job_id"] == world.jobs["alpha_x"] and newest["collections"] == ["alpha"]
    own = (await c.get(f"/api/v1/jobs/{world.jobs['alpha']}", headers=world.headers("admin_alpha"))).json()
    assert own["collections"] == ["alpha"] and own["result"]["documents"][0]["document_id"] == world.docs["alpha"]
    assert beta_job in {j["job_id"] for j in (await c.get("/api/v1/jobs?limit=500", headers=world.headers("admin"))).json()}

    # Feedback: a key rates only its own requests.
    r = await c.post("/api/v1/search", headers=world.headers("b"), json={"q": QUERY, "strategy": "bm25"})
    request_id = r.json()["request_id"]
    await world.api.runtime.bandit.decisions.flush()
    assert (await c.post("/api/v1/feedback", headers=world.headers("a"),
                         json={"request_id": request_id, "rating": 1})).status_code == 404

    # Idempotency keys are per key: beta's writer reusing alpha's key and body replays nothing of alpha's.
    body = {"text": "Vitamin D idempotent note", "external_id": "idem"}
    first = await c.post("/api/v1/documents", headers={**world.headers("w_alpha"), "Idempotency-Key": "k1"},
                         json={**body, "collection": "alpha"})
    second = await c.post("/api/v1/documents", headers={**world.headers("w_beta"), "Idempotency-Key": "k1"},
                          json={**body, "collection": "beta"})
    assert first.status_code == second.status_code == 202
    assert first.json()["job_id"] != second.json()["job_id"] and "Idempotent-Replayed" not in second.headers


async def test_chat_mcp_and_langchain_doors_see_only_their_view(world: World) -> None:
    c = world.api.client
    for who in ("a", "b", "ax"):
        bearer = {"Authorization": f"Bearer {world.keys[who]}"}
        r = await c.post("/v1/chat/completions", headers=bearer, timeout=60,
                         json={"model": "dtrag-answer", "messages": [{"role": "user", "content": QUERY}], "top_k": 10})
        assert r.status_code == 200, r.text
        assert _chunk_ids(r.json()) <= world.visible_chunks(who)
        _no_marker(r.text, world, who)
        call = {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                "params": {"name": "search", "arguments": {"query": QUERY, "top_k": 10}}}
        r = await c.post("/mcp", headers={**bearer, "Accept": "application/json, text/event-stream"}, json=call)
        assert r.status_code == 200, r.text
        result = r.json()["result"]
        hits = result["structuredContent"]["hits"]
        assert hits and {h["doc_id"] for h in hits} == world.visible_docs(who)
        _no_marker(r.text, world, who)
    r = await c.post("/v1/chat/completions", headers={"Authorization": f"Bearer {world.keys['a']}"},
                     json={"model": "dtrag-answer", "messages": [{"role": "user", "content": QUERY}],
                           "collections": ["beta"]})
    assert r.status_code == 403
    # In process there is no key: the retriever sees what the operator sees, narrowed by its collections.
    retriever = DtRagRetriever(runtime=world.api.runtime, top_k=10, collections=["beta"])
    try:
        docs = await retriever.ainvoke(QUERY)
    finally:
        retriever.close()
    assert {d.metadata["doc_id"] for d in docs} == {world.docs["beta"]}


async def test_forwarded_groups_count_only_from_a_trusted_proxy(settings: Settings) -> None:
    """X-Forwarded-Groups narrows a key's groups when the request comes from TRUSTED_PROXY_CIDRS (the test
    client's address is 127.0.0.1), and is ignored from anywhere else."""
    async with api_client(settings) as api:
        world = await _world(api)
        for cidrs, forwarded, expected in (("127.0.0.0/8", "y, z", set()), ("127.0.0.1/32", "x", {"alpha_x"}),
                                           ("10.0.0.0/8", "y", {"alpha_x"}), ("", "y", {"alpha_x"})):
            api.runtime.settings = settings.model_copy(update={"trusted_proxy_cidrs": cidrs})
            r = await api.client.post("/api/v1/search", json={"q": QUERY, "strategy": "bm25", "final_topk": 10},
                                      headers={**world.headers("ax"), "X-Forwarded-Groups": forwarded})
            found = {n for n, d in world.docs.items() if d in {h["doc_id"] for h in r.json()["hits"]}}
            assert found == {"alpha"} | expected, cidrs


async def test_collections_lifecycle(world: World) -> None:
    c, admin = world.api.client, world.headers("admin")
    made = await c.post("/api/v1/admin/api-keys/", headers=admin,
                        json={"scope": "read", "name": "via-api", "collections": ["beta"], "groups": ["x"]})
    assert made.status_code == 201 and (made.json()["collections"], made.json()["groups"]) == (["beta"], ["x"])
    listed = (await c.get("/api/v1/admin/api-keys/", headers=admin)).json()
    assert {k["name"]: k["collections"] for k in listed}["a"] == ["alpha"]
    assert {k["name"]: k["collections"] for k in listed}["test-read"] == ["*"]  # made without: every collection
    assert (await c.post("/api/v1/admin/api-keys/", headers=admin,
                         json={"scope": "read", "collections": ["Bad Name"]})).status_code == 422
    assert (await c.post("/api/v1/collections", headers=world.headers("a"), json={"name": "gamma"})).status_code == 403
    assert (await c.post("/api/v1/collections", headers=world.headers("admin_alpha"),
                         json={"name": "gamma"})).status_code == 403
    assert (await c.post("/api/v1/collections", headers=admin, json={"name": "Bad Name"})).status_code == 422
    r = await c.patch("/api/v1/collections/beta", headers=admin, json={"description": "renamed team"})
    assert r.status_code == 200 and r.json()["description"] == "renamed team" and r.json()["documents"] == 1
    r = await c.delete("/api/v1/collections/beta", headers=admin)
    assert r.status_code == 409 and "cascade" in r.json()["detail"]
    assert (await c.delete("/api/v1/collections/beta?cascade=true", headers=world.headers("admin_alpha"))).status_code == 404
    assert (await c.delete("/api/v1/collections/default", headers=admin)).status_code == 422
    assert (await c.delete("/api/v1/collections/beta?cascade=true", headers=admin)).status_code == 204
    assert (await c.get(f"/api/v1/documents/{world.docs['beta']}", headers=admin)).status_code == 404
    r = await c.post("/api/v1/search", headers=world.headers("b"), json={"q": QUERY, "strategy": "bm25"})
    assert r.json()["hits"] == []
    metrics = (await c.get("/metrics")).text
    assert 'collection_documents{collection="alpha"} 2.0' in metrics and 'collection="beta"' not in metrics
    board = (await c.get("/api/v1/admin/dashboard/collections", headers=admin)).json()["collections"]
    alpha = next(x for x in board if x["name"] == "alpha")
    assert alpha["documents"] == 2 and {"a", "ax", "w-alpha", "admin-alpha"} <= {k["name"] for k in alpha["keys"]}


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_cli_binds_keys_and_ingests_into_a_collection(database_url: str, tmp_path) -> None:
    env = {**os.environ, "DATABASE_URL": database_url}
    (tmp_path / "note.md").write_text("# Ledger\n\nVitamin D budget of the finance team.")
    done = run_cli(["ingest", str(tmp_path / "note.md"), "--collection", "finance", "--access-groups", "payroll",
                    "--json"], env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["created"] == 1
    made = run_cli(["keys", "create", "--scope", "read", "--collections", "finance,default", "--groups", "payroll",
                    "--json"], env)
    assert made.returncode == 0, made.stderr
    created = json.loads(made.stdout)
    assert created["collections"] == ["default", "finance"] and created["groups"] == ["payroll"]
    listed = json.loads(run_cli(["keys", "list", "--json"], env).stdout)
    assert [(k["collections"], k["groups"]) for k in listed if k["id"] == created["id"]] == \
        [(["default", "finance"], ["payroll"])]
    refused = run_cli(["keys", "create", "--scope", "read", "--collections", "Not Valid"], env)
    assert refused.returncode != 0 and "collection name" in refused.stderr
