"""The doors on the HTTP app, in process (SPEC-DOORS-001): the key check at /mcp, the chat API's shape and
refusals, the A2A routes behind their flag and their tasks read through any worker, door metrics, MCP's
search being REST's. The protocol clients against real servers are in tests/e2e/test_doors_servers.py."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
from a2a.client import A2ACardResolver, Client, ClientConfig, create_client
from a2a.helpers.proto_helpers import get_data_parts
from a2a.types import GetTaskRequest, ListTasksRequest, Message, Part, Role, SendMessageRequest, TaskState
from a2a.utils.errors import TaskNotFoundError
from google.protobuf.struct_pb2 import Struct

from apps.core.config import Settings
from tests.support.api import Api, api_client
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


def _a2a_message(text: str, skill: str | None = None, context_id: str = "") -> Message:
    metadata = Struct()
    if skill:
        metadata.update({"skill": skill})
    return Message(role=Role.ROLE_USER, message_id=uuid.uuid4().hex, parts=[Part(text=text)], metadata=metadata,
                   context_id=context_id)


@asynccontextmanager
async def _a2a_client(api: Api, key: str) -> AsyncIterator[Client]:
    """The A2A SDK's client against an in-process app (its card names http://test/a2a)."""
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=api.app), base_url="http://test",
                                 headers={"X-API-Key": key}, timeout=60) as http:
        card = await A2ACardResolver(http, "http://test").get_agent_card()
        client = await create_client(card, client_config=ClientConfig(httpx_client=http, streaming=False))
        try:
            yield client
        finally:
            await client.close()


async def test_a2a_tasks_are_read_through_any_worker(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two app instances on one database stand for two workers: a task one ran, the other reads; another
    key reads neither."""
    monkeypatch.setenv("FEATURE_AGENT_MESSAGING", "true")
    async with api_client(settings) as first, api_client(settings) as second:
        await first.runtime.ingestion.ingest(corpus())
        key = first.keys["read"]
        async with _a2a_client(first, key) as client:
            # The client names the context: longer than the SDK's 36-character column (PostgreSQL keeps it).
            events = [e async for e in client.send_message(SendMessageRequest(
                message=_a2a_message("vitamin D", "search", context_id="ctx-" + "x" * 96)))]
        task = events[-1].task
        assert task.status.state == TaskState.TASK_STATE_COMPLETED and task.context_id == "ctx-" + "x" * 96

        async with _a2a_client(second, key) as client:
            read = await client.get_task(GetTaskRequest(id=task.id))
            listed = await client.list_tasks(ListTasksRequest(include_artifacts=True))
        assert read.id == task.id and read.status.state == TaskState.TASK_STATE_COMPLETED
        hits = get_data_parts(read.artifacts[0].parts)[0]["hits"]
        assert read.artifacts[0].name == "hits" and hits[0]["title"] == "Vitamin D"
        assert hits == get_data_parts(task.artifacts[0].parts)[0]["hits"]
        assert read.history[0].parts[0].text == "vitamin D"
        assert [t.id for t in listed.tasks] == [task.id]

        async with _a2a_client(second, second.keys["read"]) as client:  # another key: no such task
            with pytest.raises(TaskNotFoundError):
                await client.get_task(GetTaskRequest(id=task.id))
            assert list((await client.list_tasks(ListTasksRequest())).tasks) == []


async def test_door_search_is_rest_search_with_case_memory(settings: Settings,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """MCP's search runs REST's: with case memory on (`neural_case_selector`) both report it."""
    monkeypatch.setenv("FEATURE_NEURAL_CASE_SELECTOR", "true")
    async with api_client(settings) as api:
        await api.runtime.ingestion.ingest(corpus())
        query = {"q": "vitamin D sunlight bones", "final_topk": 3, "strategy": "bm25"}
        rest = (await api.client.post("/api/v1/search", headers=api.headers("read"), json=query)).json()
        call = {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                "params": {"name": "search", "arguments": {"query": query["q"], "top_k": 3, "strategy": "bm25"}}}
        r = await api.client.post("/mcp", json=call, headers={**api.headers("read"),
                                                               "Accept": "application/json, text/event-stream"})
        assert r.status_code == 200, r.text
        door = r.json()["result"]["structuredContent"]
        assert rest["cases"] is not None and door["cases"] is not None
        assert [(h["chunk_id"], h["score"], h["case_ids"]) for h in door["hits"]] == \
            [(h["chunk_id"], h["score"], h["case_ids"]) for h in rest["hits"]]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_filters_beyond_the_caps_are_the_same_422_through_every_door(settings: Settings) -> None:
    async with api_client(settings) as api:
        filters = {"metadata": {"year": 2**70}}
        expected = "filters.metadata.year is outside the 64-bit integer range"
        r = await api.client.post("/api/v1/search", headers=api.headers("read"), json={"q": "x", "filters": filters})
        assert r.status_code == 422 and r.headers["content-type"].startswith("application/problem+json")
        assert r.json()["detail"] == expected and r.json()["errors"] == [{"field": "filters", "message": expected}]
        r = await api.client.post("/v1/chat/completions", headers=api.headers("read"),
                                  json={"model": "dtrag-answer", "filters": filters,
                                        "messages": [{"role": "user", "content": "x"}]})
        assert r.status_code == 422 and r.json()["detail"] == expected
        call = {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                "params": {"name": "search", "arguments": {"query": "x", "filters": filters}}}
        r = await api.client.post("/mcp", json=call, headers={**api.headers("read"),
                                                               "Accept": "application/json, text/event-stream"})
        result = r.json()["result"]
        assert result["isError"] and result["content"][0]["text"].endswith(f"search: 422: {expected}")
        metrics = (await api.client.get("/metrics")).text
        assert 'dtrag_door_errors_total{door="chat",kind="client",operation="answer"}' in metrics


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_every_door_searches_the_stripped_question(settings: Settings) -> None:
    """Surrounding whitespace is not part of a question: REST and MCP rank "q " as "q" (a trailing space
    moves the query's vector enough to swap near-tied passages, so doors that kept it disagreed)."""
    async with api_client(settings) as api:
        await api.runtime.ingestion.ingest(corpus())

        async def rest(q: str) -> list[tuple[int, float]]:
            body = (await api.client.post("/api/v1/search", headers=api.headers("read"),
                                          json={"q": q, "final_topk": 5, "strategy": "dense"})).json()
            return [(h["chunk_id"], h["score"]) for h in body["hits"]]

        async def mcp(q: str) -> list[tuple[int, float]]:
            call = {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                    "params": {"name": "search", "arguments": {"query": q, "top_k": 5, "strategy": "dense"}}}
            r = await api.client.post("/mcp", json=call, headers={**api.headers("read"),
                                                                   "Accept": "application/json, text/event-stream"})
            return [(h["chunk_id"], h["score"]) for h in r.json()["result"]["structuredContent"]["hits"]]

        plain = await rest(QUESTION)
        assert await rest(f"  {QUESTION} \n") == plain and await mcp(f"{QUESTION} ") == plain
