"""One DT-RAG consulting another over MCP (SPEC-DOORS-001): two real servers on loopback ports. The peer
serves its documents at /mcp with its tool policy on (only `search` for every key); the first registers
the peer with `dtrag tools add` and, with `mcp_tools` and `tools_policy` on, calls the peer's search for
a question its own documents do not answer, and cites what came back as `tool:peer/search`."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys

import httpx
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from apps.core.api_keys import Scope
from apps.core.config import load_settings
from apps.core.migrations import upgrade
from apps.doors.tool_audit import ToolAudit
from apps.ingestion.documents import SourceDocument
from apps.runtime import build_runtime
from tests.support.corpus import corpus
from tests.support.server import ROOT, running_server

BIOLOGY = [
    SourceDocument(external_id="chloroplast", title="Chloroplasts",
                   text="Chloroplasts contain chlorophyll, the green pigment that captures light for photosynthesis. "
                        "They turn carbon dioxide and water into sugar."),
    SourceDocument(external_id="mitochondria", title="Mitochondria",
                   text="Mitochondria release energy from sugar by cellular respiration. They have their own DNA."),
]


async def _database(folder, name: str, documents: list[SourceDocument]) -> tuple[str, str]:
    url = f"sqlite+aiosqlite:///{folder / f'{name}.db'}"
    upgrade(url)
    async with build_runtime(load_settings(database_url=url)) as runtime:
        await runtime.ingestion.ingest(documents)
        _, key = await runtime.keys.create(Scope.read, name=f"{name}-reader")
    return url, key


async def _audit(url: str) -> list[dict]:
    async with build_runtime(load_settings(database_url=url)) as runtime:
        for _ in range(50):  # written every second
            if rows := await ToolAudit(runtime.engine).recent():
                return rows
            await asyncio.sleep(0.2)
    return []


async def test_one_dt_rag_cites_another_over_mcp(tmp_path) -> None:
    peer_url, peer_key = await _database(tmp_path, "peer", BIOLOGY)
    home_url, home_key = await _database(tmp_path, "home", corpus())
    secret = os.environ["SECRET_KEY"]
    with running_server(peer_url, tmp_path, workers=1, SECRET_KEY=secret, LEG_TIMEOUT_MS="30000",
                        FEATURE_TOOLS_POLICY="true",
                        TOOLS_ALLOWLIST=json.dumps({"*": ["search"]})) as (peer, _):
        added = subprocess.run(
            [sys.executable, "-m", "apps.cli.main", "tools", "add", "peer", "--url", f"{peer}/mcp",
             "--header", "X-API-Key=${PEER_KEY}",
             "--description", "Biology notes: chloroplasts, chlorophyll, photosynthesis, mitochondria, cells"],
            cwd=ROOT, env={**os.environ, "DATABASE_URL": home_url}, capture_output=True, text=True, timeout=120)
        assert added.returncode == 0, added.stderr
        with running_server(home_url, tmp_path, workers=1, SECRET_KEY=secret, PEER_KEY=peer_key, LEG_TIMEOUT_MS="30000",
                            FEATURE_MCP_TOOLS="true", FEATURE_TOOLS_POLICY="true",
                            TOOLS_ALLOWLIST=json.dumps({"*": ["peer/search"]})) as (home, _):
            async with httpx.AsyncClient(base_url=home, headers={"X-API-Key": home_key}, timeout=120) as http:
                # Nothing at home answers it; the peer's description matches: its search is called and cited.
                body = (await http.post("/answer", json={"q": "What do chloroplasts contain?"})).json()
                tool = [s for s in body["sources"] if s["doc_id"] == "tool:peer/search"]
                assert tool and tool[0]["title"] == "Chloroplasts" and tool[0]["chunk_id"] < 0, body
                assert "chlorophyll" in body["answer"] and not any(n["node"] == "tools" for n in body["degraded_nodes"])
                assert any(tool[0]["chunk_id"] in c["chunk_ids"] for c in body["citations"])

                # Asked by name, it is called although home has an answer of its own.
                body = (await http.post("/answer", json={"q": "@peer/search mitochondria energy"})).json()
                assert any(s["doc_id"] == "tool:peer/search" and s["title"] == "Mitochondria" for s in body["sources"])

                # Home's own answers still come from home when home knows.
                body = (await http.post("/answer", json={"q": "What is PostgreSQL?"})).json()
                assert body["sources"] and not any(s["doc_id"].startswith("tool:") for s in body["sources"])

                # The A2A agent is off on this server.
                assert (await http.get("/.well-known/agent-card.json")).status_code == 404

            # The peer's gate: `search` allowed for every key, anything else refused, every decision audited.
            client = Client(streamable_http_client(f"{peer}/mcp", http_client=httpx2.AsyncClient(
                headers={"X-API-Key": peer_key}, timeout=60)))
            async with client:
                refused = await client.call_tool("answer", {"question": "What do chloroplasts contain?"})
            assert refused.is_error and "refused by the tool policy" in refused.content[0].text

    home_rows = await _audit(home_url)
    assert {(r["direction"], r["tool"], r["decision"], r["outcome"]) for r in home_rows} == {
        ("out", "peer/search", "allowed", "ok")}
    peer_rows = await _audit(peer_url)
    assert ("in", "search", "allowed") in {(r["direction"], r["tool"], r["decision"]) for r in peer_rows}
    assert ("in", "answer", "denied") in {(r["direction"], r["tool"], r["decision"]) for r in peer_rows}
