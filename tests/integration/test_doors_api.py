"""The doors on the HTTP app, in process (SPEC-DOORS-001): the key check at /mcp, the chat API's shape and
refusals, the A2A routes behind their flag, door metrics. The protocol clients against real servers are
in tests/e2e/test_doors_servers.py."""

from __future__ import annotations

import json

import pytest

from apps.core.config import Settings
from tests.support.api import api_client
from tests.support.corpus import corpus

QUESTION = "What helps the skin produce vitamin D?"


async def test_mcp_endpoint_needs_a_key(settings: Settings) -> None:
    async with api_client(settings) as api:
        call = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
        r = await api.client.post("/mcp", json=call)
        assert r.status_code == 401 and "Bearer" in r.headers["www-authenticate"]
        assert r.headers["content-type"].startswith("application/problem+json")
        r = await api.client.post("/mcp", json=call, headers={"Authorization": "Bearer dtr_nope_nope"})
        assert r.status_code == 401 and "invalid" in r.json()["detail"]


async def test_chat_completions(settings: Settings) -> None:
    async with api_client(settings) as api:
        await api.runtime.ingestion.ingest(corpus())
        bearer = {"Authorization": f"Bearer {api.keys['read']}"}
        assert (await api.client.get("/v1/models")).status_code == 401
        models = (await api.client.get("/v1/models", headers=bearer)).json()
        assert [m["id"] for m in models["data"]] == ["dtrag-answer", "dtrag-summary", "dtrag-keypoints", "dtrag-debate"]

        def chat(**body):
            return api.client.post("/v1/chat/completions", headers=bearer, timeout=60,
                                   json={"model": "dtrag-answer", **body})

        r = await chat(messages=[{"role": "user", "content": QUESTION}], temperature=0.2, max_tokens=50)
        assert r.status_code == 200, r.text
        body = r.json()
        content = body["choices"][0]["message"]["content"]
        assert body["object"] == "chat.completion" and "[1]" in content and "Sunlight" in content
        assert body["sources"][0]["index"] == 1 and body["sources"][0]["title"] == "Vitamin D"
        rest = (await api.client.post("/answer", headers=api.headers("read"), json={"q": QUESTION})).json()
        assert content == rest["answer"] and [s["chunk_id"] for s in body["sources"]] == \
            [s["chunk_id"] for s in rest["sources"]]

        # A follow-up is rewritten against the earlier turns (REST's conversations); content parts are text.
        r = await chat(messages=[{"role": "system", "content": "be brief"},
                                 {"role": "user", "content": [{"type": "text", "text": "What is vitamin D?"}]},
                                 {"role": "assistant", "content": "Vitamin D ..."},
                                 {"role": "user", "content": "What is it associated with?"}])
        follow_up = r.json()
        assert "vitamin d" in (follow_up["dtrag"]["rewritten_question"] or "").lower(), follow_up["dtrag"]
        assert "bone" in follow_up["choices"][0]["message"]["content"].lower()

        assert (await chat(model="gpt-4", messages=[{"role": "user", "content": "hi"}])).status_code == 404
        assert (await chat(messages=[{"role": "assistant", "content": "hi"}])).status_code == 422
        assert (await chat(messages=[])).status_code == 422
        assert (await chat(messages=[{"role": "user", "content": "x" * 4001}])).status_code == 422
        assert (await chat(messages=[{"role": "user", "content": "hi"}], collections=["nope"])).status_code == 404

        # Streamed: OpenAI's chunk events, the answer in deltas, sources on the last chunk, then [DONE].
        async with api.client.stream("POST", "/v1/chat/completions", headers=bearer, timeout=60,
                                     json={"model": "dtrag-answer", "stream": True,
                                           "stream_options": {"include_usage": True},
                                           "messages": [{"role": "user", "content": QUESTION}]}) as r:
            assert r.headers["content-type"].startswith("text/event-stream")
            lines = [line async for line in r.aiter_lines() if line.startswith("data: ")]
        assert lines[-1] == "data: [DONE]"
        chunks = [json.loads(line[6:]) for line in lines[:-1]]
        text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
        assert text == content
        last = next(c for c in chunks if c["choices"] and c["choices"][0]["finish_reason"] == "stop")
        assert last["sources"] == body["sources"] and chunks[-1]["usage"]["total_tokens"] == 0

        metrics = (await api.client.get("/metrics")).text
        assert 'dtrag_door_calls_total{door="chat",operation="answer"}' in metrics
        assert 'dtrag_door_duration_seconds_count{door="chat",operation="answer_stream"}' in metrics


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_a2a_routes_follow_their_flag(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    async with api_client(settings) as api:
        assert (await api.client.get("/.well-known/agent-card.json")).status_code == 404
        assert (await api.client.post("/a2a", json={}, headers=api.headers("read"))).status_code == 404
    monkeypatch.setenv("FEATURE_AGENT_MESSAGING", "true")
    async with api_client(settings) as api:
        card = (await api.client.get("/.well-known/agent-card.json")).json()  # public: no key
        assert [s["id"] for s in card["skills"]] == ["answer", "search"]
        assert card["supportedInterfaces"][0]["url"] == "http://test/a2a"
        assert card["securitySchemes"]["apiKey"]["apiKeySecurityScheme"]["name"] == "X-API-Key"
        assert (await api.client.post("/a2a", json={})).status_code == 401
