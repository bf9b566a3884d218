"""`DtRagRetriever` and `answer_tool` against langchain-core's contract (invoke, ainvoke, batch, abatch):
in-process on SQLite and PostgreSQL, and over HTTP against a real server with a read key."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import RunnableLambda
from langchain_core.tools import BaseTool

from apps.core.config import Settings
from apps.integrations.langchain import DtRagError, DtRagRetriever, answer_tool
from apps.runtime import Runtime, build_runtime
from tests.support.corpus import CORPUS, corpus
from tests.support.server import run_cli, running_server

METADATA = {"chunk_id", "doc_id", "score", "strategy", "source_url", "title", "taxonomy_path", "collection"}


def _check_vitamin(docs: list[Document], strategy: str | None = None) -> None:
    assert docs and all(isinstance(d, Document) for d in docs)
    top = docs[0]
    assert top.metadata["title"] == "Vitamin D" and "bone loss" in top.page_content
    assert set(top.metadata) == METADATA
    assert isinstance(top.metadata["chunk_id"], int) and top.id == str(top.metadata["chunk_id"])
    scores = [d.metadata["score"] for d in docs]
    assert scores == sorted(scores, reverse=True)
    if strategy:
        assert {d.metadata["strategy"] for d in docs} == {strategy}


async def test_in_process_async_contract_on_a_given_runtime(runtime: Runtime) -> None:
    await runtime.ingestion.ingest(corpus())
    retriever = DtRagRetriever(runtime=runtime, top_k=3, strategy="bm25")
    try:
        assert isinstance(retriever, BaseRetriever)
        _check_vitamin(await retriever.ainvoke("vitamin D and bone loss"), "bm25")
        many = await retriever.abatch(["vitamin D and bone loss", "relational database indexes"])
        assert [b[0].metadata["title"] for b in many] == ["Vitamin D", "Relational databases"]
        filtered = DtRagRetriever(runtime=runtime, filters={"taxonomy_path": "tech"})
        assert {d.metadata["taxonomy_path"].split("/")[0] for d in await filtered.ainvoke("learning")} == {"tech"}
        filtered.close()
        tool = answer_tool(retriever)
        assert isinstance(tool, BaseTool)
        message = await tool.ainvoke({"type": "tool_call", "id": "1", "name": tool.name,
                                      "args": {"question": "What is vitamin D deficiency associated with?"}})
        assert "bone loss" in message.content and "Sources:" in message.content
        assert message.artifact["sources"][0]["title"] == "Vitamin D"
    finally:
        retriever.close()


async def _ingest(settings: Settings) -> None:
    rt = build_runtime(settings)
    try:
        await rt.ingestion.ingest(corpus())
    finally:
        await rt.close()


def test_in_process_sync_and_async_on_its_own_runtime(settings: Settings) -> None:
    asyncio.run(_ingest(settings))
    retriever = DtRagRetriever(settings=settings, top_k=2)
    try:
        _check_vitamin(retriever.invoke("vitamin D and bone loss"), settings.default_strategy)
        batch = retriever.batch(["vitamin D and bone loss", "세종대왕 훈민정음"])
        assert [b[0].metadata["title"] for b in batch] == ["Vitamin D", "세종대왕"]
        # async calls go to the retriever's own loop, where its runtime's connections live
        _check_vitamin(asyncio.run(retriever.ainvoke("vitamin D and bone loss")))
        # a chain: retrieve, then format the context, as in the README
        chain = retriever | RunnableLambda(lambda docs: "\n".join(d.metadata["title"] for d in docs))
        assert chain.invoke("vitamin D and bone loss").splitlines()[0] == "Vitamin D"
        content, artifact = answer_tool(retriever).func("What does PostgreSQL speed up queries with?")
        assert "Relational databases" in content and artifact["sources"]
        with pytest.raises(ValueError):
            retriever.invoke("   ")  # the API's own schema refuses a blank query here too
    finally:
        retriever.close()


def test_configuration_errors() -> None:
    with pytest.raises(ValueError, match="api_key"):
        DtRagRetriever(base_url="http://127.0.0.1:1")
    with pytest.raises(ValueError):
        DtRagRetriever(base_url="http://127.0.0.1:1", api_key="k", top_k=0)
    with pytest.raises(ValueError, match="api_key"):
        DtRagRetriever(base_url="http://127.0.0.1:1", api_key="")
    # The key is a secret: a retriever printed, logged or serialised does not show it.
    retriever = DtRagRetriever(base_url="http://127.0.0.1:1", api_key="dtr_abcd1234_topsecretvalue")
    for shown in (repr(retriever), str(retriever), retriever.model_dump_json(), str(retriever.model_dump())):
        assert "topsecretvalue" not in shown
    assert retriever.api_key.get_secret_value() == "dtr_abcd1234_topsecretvalue"


def test_over_http_with_a_read_key(database_url: str, tmp_path) -> None:
    with running_server(database_url, tmp_path, workers=1) as (base, env):
        admin = json.loads(run_cli(["keys", "create", "--scope", "admin", "--json"], env).stdout)["api_key"]
        for doc in CORPUS:
            r = httpx.post(f"{base}/api/v1/documents?wait=true", headers={"X-API-Key": admin}, timeout=60,
                           json={"title": doc.title, "text": doc.text, "taxonomy_path": doc.taxonomy_path,
                                 "source_url": f"https://docs.example/{doc.external_id}"})
            assert r.status_code == 201, r.text
        created = run_cli(["keys", "create", "--scope", "read", "--json"], env)
        key = json.loads(created.stdout)["api_key"]
        retriever = DtRagRetriever(base_url=base, api_key=key, top_k=3, strategy="hybrid_rrf")
        docs = retriever.invoke("vitamin D and bone loss")
        _check_vitamin(docs, "hybrid_rrf")
        assert docs[0].metadata["source_url"] == "https://docs.example/bio"
        batch = retriever.batch(["vitamin D and bone loss", "relational database indexes"])
        assert [b[0].metadata["title"] for b in batch] == ["Vitamin D", "Relational databases"]
        _check_vitamin(asyncio.run(retriever.ainvoke("vitamin D and bone loss")), "hybrid_rrf")
        content, artifact = answer_tool(retriever).func("What is vitamin D deficiency associated with?")
        assert "bone loss" in content and "https://docs.example/bio" in content
        assert artifact["citations"] and artifact["request_id"]
        with pytest.raises(DtRagError) as refused:
            DtRagRetriever(base_url=base, api_key="dtr_wrong_key").invoke("vitamin")
        assert refused.value.status == 401
