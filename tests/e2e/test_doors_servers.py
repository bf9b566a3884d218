"""The doors against a real `dtrag serve` (two workers) with the protocols' own clients (SPEC-DOORS-001):
the MCP SDK client over streamable HTTP and over stdio (`python -m apps.doors.mcp_server`), the `openai`
client against the chat API, the A2A SDK client against the agent. Each result is compared with what the
REST API answers for the same request."""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import AsyncIterator

import httpx
import httpx2
import openai
import pytest
from a2a.client import A2ACardResolver, ClientConfig, create_client
from a2a.helpers import get_artifact_text
from a2a.helpers.proto_helpers import get_data_parts
from a2a.types import Message, Part, Role, SendMessageRequest, TaskState
from google.protobuf.struct_pb2 import Struct
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp.client.streamable_http import streamable_http_client

from apps.core.api_keys import Scope
from apps.core.config import load_settings
from apps.core.migrations import upgrade
from apps.runtime import build_runtime
from tests.support.corpus import corpus
from tests.support.server import ROOT, running_server

QUESTION = "What helps the skin produce vitamin D?"


@pytest.fixture(scope="module")
async def served(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[dict]:
    folder = tmp_path_factory.mktemp("doors")
    url = f"sqlite+aiosqlite:///{folder / 'doors.db'}"
    upgrade(url)
    async with build_runtime(load_settings(database_url=url)) as runtime:
        await runtime.ingestion.ingest(corpus())
        _, key = await runtime.keys.create(Scope.read, name="doors")
        _, slow = await runtime.keys.create(Scope.read, name="limited", rate_limit_per_minute=3)
    # The keys above were made under this process's SECRET_KEY: the server must verify under the same one.
    # A generous leg timeout: parity compares hybrid results, which a loaded machine must not cut to BM25.
    with running_server(url, folder, workers=2, FEATURE_AGENT_MESSAGING="true", LEG_TIMEOUT_MS="30000",
                        SECRET_KEY=os.environ["SECRET_KEY"]) as (base, env):
        yield {"base": base, "env": env, "url": url, "key": key, "limited": slow}


def _mcp(base: str, headers: dict[str, str], statuses: list[int] | None = None) -> Client:
    """The SDK's client over streamable HTTP; `statuses` collects the HTTP status of every answer."""

    async def seen(response: httpx2.Response) -> None:
        if statuses is not None:
            statuses.append(response.status_code)

    http = httpx2.AsyncClient(headers=headers, timeout=60, event_hooks={"response": [seen]})
    return Client(streamable_http_client(f"{base}/mcp", http_client=http))


async def _rest(base: str, key: str, path: str, body: dict) -> dict:
    async with httpx.AsyncClient(base_url=base, timeout=60) as client:
        r = await client.post(path, headers={"X-API-Key": key}, json=body)
        assert r.status_code == 200, r.text
        return r.json()


async def _tools_match_rest(client: Client, base: str, key: str) -> None:
    """list tools, call each, and compare search and answer with the REST API's."""
    tools = {t.name: t for t in (await client.list_tools()).tools}
    assert set(tools) == {"search", "answer", "get_document", "list_collections", "feedback"}
    assert all(tools[n].annotations.read_only_hint and not tools[n].annotations.destructive_hint
               for n in ("search", "answer", "get_document", "list_collections"))
    assert tools["feedback"].annotations.read_only_hint is False

    args = {"query": "vitamin D sunlight bones", "top_k": 4, "filters": {"language": "en"}}
    found = (await client.call_tool("search", args)).structured_content
    assert not found["degraded"], found["degraded_reasons"]
    rest = await _rest(base, key, "/api/v1/search",
                       {"q": args["query"], "final_topk": 4, "filters": {"language": "en"}})
    assert [(h["chunk_id"], h["score"]) for h in found["hits"]] == [(h["chunk_id"], h["score"]) for h in rest["hits"]]
    assert found["hits"][0]["title"] == "Vitamin D" and found["hits"][0]["text"]

    answer = (await client.call_tool("answer", {"question": QUESTION})).structured_content
    rest_answer = await _rest(base, key, "/answer", {"q": QUESTION})
    assert answer["answer"] == rest_answer["answer"] and "[1]" in answer["answer"]
    assert [s["chunk_id"] for s in answer["sources"]] == [s["chunk_id"] for s in rest_answer["sources"]]
    assert answer["citations"] and answer["citations"][0]["chunk_ids"]

    doc_id = found["hits"][0]["doc_id"]
    document = (await client.call_tool("get_document", {"document_id": doc_id})).structured_content
    assert document["title"] == "Vitamin D" and document["chunks"][0]["text"].startswith("Vitamin D")
    text = (await client.read_resource(f"dtrag://documents/{doc_id}")).contents[0].text
    assert text.startswith("Vitamin D") and "Sunlight" in text
    missing = await client.call_tool("get_document", {"document_id": "nope"})
    assert missing.is_error and "404" in missing.content[0].text

    collections = (await client.call_tool("list_collections", {})).structured_content["collections"]
    assert [(c["name"], c["documents"]) for c in collections] == [("default", 6)]
    unknown = await client.call_tool("search", {"query": "x", "collections": ["secret"]})
    assert unknown.is_error and "no collection named 'secret'" in unknown.content[0].text

    # Feedback joins the bandit's decision log: a search the bandit did not choose for has no decision, a 404
    # over REST and the same refusal here.
    rated = await client.call_tool("feedback", {"request_id": found["request_id"], "rating": 1})
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        r = await http.post("/api/v1/feedback", headers={"X-API-Key": key},
                            json={"request_id": found["request_id"], "rating": 1})
    assert r.status_code == 404 and rated.is_error and "404" in rated.content[0].text
    bad = await client.call_tool("search", {"query": "", "top_k": 1000})
    assert bad.is_error


async def test_mcp_over_http(served: dict) -> None:
    base, key = served["base"], served["key"]
    async with _mcp(base, {"X-API-Key": key}) as client:
        await _tools_match_rest(client, base, key)
    async with _mcp(base, {"Authorization": f"Bearer {key}"}) as client:  # what MCP clients send
        assert (await client.call_tool("list_collections", {})).is_error is False

    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        r = await http.post("/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
        assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")
    with pytest.raises(Exception):  # noqa: B017 (the SDK raises its transport's error for the 401)
        async with _mcp(base, {"X-API-Key": "dtr_bad_key"}) as client:
            await client.list_tools()

    # The key's rate limit (3 a minute) counts MCP requests as REST counts its own: past it, 429s.
    statuses: list[int] = []
    with pytest.raises(Exception):  # noqa: B017 (the SDK reports the refused request as its own error)
        async with _mcp(base, {"X-API-Key": served["limited"]}, statuses) as client:
            for _ in range(6):
                await client.call_tool("list_collections", {})
    assert statuses[:3] == [200, 200, 200] and statuses[-1] == 429


async def test_mcp_over_stdio(served: dict) -> None:
    env = {"DATABASE_URL": served["url"], "SECRET_KEY": served["env"]["SECRET_KEY"], "LOG_LEVEL": "WARNING",
           "LEG_TIMEOUT_MS": "30000",
           "DTRAG_API_KEY": served["key"], "PATH": os.environ.get("PATH", "")}
    params = StdioServerParameters(command=sys.executable, args=["-m", "apps.cli.main", "mcp"], env=env, cwd=ROOT)
    async with Client(params) as client:
        await _tools_match_rest(client, served["base"], served["key"])
    bad = StdioServerParameters(command=sys.executable, args=["-m", "apps.doors.mcp_server"], cwd=ROOT,
                                env={**env, "DTRAG_API_KEY": "dtr_bad_key"})
    with pytest.raises(Exception):  # noqa: B017 (the server exits with status 2 before it speaks)
        async with Client(bad) as client:
            await client.list_tools()


async def test_chat_api_with_the_openai_client(served: dict) -> None:
    client = openai.AsyncOpenAI(base_url=f"{served['base']}/v1", api_key=served["key"], max_retries=0)
    assert sorted(m.id for m in (await client.models.list()).data) == [
        "dtrag-answer", "dtrag-debate", "dtrag-keypoints", "dtrag-summary"]
    messages = [{"role": "user", "content": QUESTION}]
    completion = await client.chat.completions.create(model="dtrag-answer", messages=messages)
    content = completion.choices[0].message.content
    rest = await _rest(served["base"], served["key"], "/answer", {"q": QUESTION})
    assert content == rest["answer"] and "[1]" in content
    sources = completion.model_dump()["sources"]
    assert sources[0]["index"] == 1 and sources[0]["chunk_id"] == rest["sources"][0]["chunk_id"]

    stream = await client.chat.completions.create(model="dtrag-answer", messages=messages, stream=True)
    pieces, last = [], None
    async for chunk in stream:
        if chunk.choices:
            pieces.append(chunk.choices[0].delta.content or "")
            last = chunk
    assert "".join(pieces) == content and len(pieces) > 2  # streamed in pieces, the same answer
    assert last.choices[0].finish_reason == "stop" and last.model_dump()["sources"] == sources

    with pytest.raises(openai.AuthenticationError):
        await openai.AsyncOpenAI(base_url=f"{served['base']}/v1", api_key="dtr_bad", max_retries=0).models.list()
    with pytest.raises(openai.NotFoundError):
        await client.chat.completions.create(model="gpt-4o", messages=messages)


def _message(text: str, skill: str | None = None) -> Message:
    metadata = Struct()
    if skill:
        metadata.update({"skill": skill})
    return Message(role=Role.ROLE_USER, message_id=uuid.uuid4().hex, parts=[Part(text=text)], metadata=metadata)


async def test_a2a_agent(served: dict) -> None:
    base, key = served["base"], served["key"]
    async with httpx.AsyncClient(timeout=30) as http:  # the card is public
        card = await A2ACardResolver(http, base).get_agent_card()
    assert [s.id for s in card.skills] == ["answer", "search"] and card.capabilities.streaming
    assert card.supported_interfaces[0].url == f"{base}/a2a" and "apiKey" in card.security_schemes
    rest = await _rest(base, key, "/answer", {"q": QUESTION})

    for streaming in (False, True):
        async with httpx.AsyncClient(headers={"X-API-Key": key}, timeout=60) as http:
            client = await create_client(card, client_config=ClientConfig(httpx_client=http, streaming=streaming))
            events = [e async for e in client.send_message(SendMessageRequest(message=_message(QUESTION)))]
            await client.close()
        tasks = [e.task for e in events if e.HasField("task")]
        updates = [e.artifact_update for e in events if e.HasField("artifact_update")]
        if streaming:  # the answer arrives in chunks, then its final text, then the citations
            assert len([u for u in updates if u.artifact.name == "answer"]) >= 2
            assert events[-1].status_update.status.state == TaskState.TASK_STATE_COMPLETED
            answer = [u for u in updates if u.artifact.name == "answer"][-1].artifact
            citations = next(u for u in updates if u.artifact.name == "citations").artifact
        else:  # one finished task carrying both artifacts
            assert tasks[-1].status.state == TaskState.TASK_STATE_COMPLETED
            artifacts = {a.name: a for a in tasks[-1].artifacts}
            answer, citations = artifacts["answer"], artifacts["citations"]
        assert get_artifact_text(answer) == rest["answer"]
        data = get_data_parts(citations.parts)[0]
        assert data["answer"] == rest["answer"] and data["sources"][0]["title"] == "Vitamin D" and data["citations"]

    async with httpx.AsyncClient(headers={"X-API-Key": key}, timeout=60) as http:
        client = await create_client(card, client_config=ClientConfig(httpx_client=http, streaming=False))
        events = [e async for e in client.send_message(SendMessageRequest(message=_message("vitamin D", "search")))]
        await client.close()
    hits = get_data_parts(events[-1].task.artifacts[0].parts)[0]["hits"]
    assert events[-1].task.artifacts[0].name == "hits" and hits[0]["title"] == "Vitamin D"

    async with httpx.AsyncClient(timeout=30) as http:  # tasks need a key
        client = await create_client(card, client_config=ClientConfig(httpx_client=http, streaming=False))
        with pytest.raises(Exception, match="401"):
            _ = [e async for e in client.send_message(SendMessageRequest(message=_message(QUESTION)))]
        await client.close()
