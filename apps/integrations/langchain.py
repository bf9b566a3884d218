"""LangChain adapters: `DtRagRetriever` (a `BaseRetriever`) and `answer_tool` (`POST /answer` as a `Tool`).

Two backends behind one interface: over HTTP with an API key (the service's `/api/v1/search` and
`/answer`), or in-process on a composition root (a `Runtime` you pass, or one built from settings).
Requests are validated by the API's own schemas on both, so a bad `top_k` fails alike either way.
Over HTTP the key decides what is visible (its collections and groups); in-process there is no key and
the retriever sees what the operator does (every collection, or its `collections`).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, Literal, Protocol, TypeVar

import httpx
from langchain_core.callbacks import AsyncCallbackManagerForRetrieverRun, CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from langchain_core.tools import BaseTool, StructuredTool
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, SecretStr, field_validator, model_validator

from apps.api.schemas import AnswerIn, SearchRequest, to_filters
from apps.core.config import Settings
from apps.core.visibility import EVERYTHING
from apps.orchestration.src.answer_models import AnswerRequest
from apps.runtime import Runtime, build_runtime

T = TypeVar("T")


class DtRagError(RuntimeError):
    """The service refused a request (HTTP status and the problem's `detail`)."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"DT-RAG answered {status}: {detail}")
        self.status = status
        self.detail = detail


class _Backend(Protocol):
    async def search(self, request: SearchRequest) -> dict[str, Any]: ...
    async def answer(self, request: AnswerIn) -> dict[str, Any]: ...
    def run(self, coro: Coroutine[Any, Any, T]) -> T: ...
    async def arun(self, coro: Coroutine[Any, Any, T]) -> T: ...
    def close(self) -> None: ...


class _HttpBackend:
    """A client per call: an `httpx.AsyncClient` belongs to the loop it was made in, and a retriever
    may be called from several (sync `invoke` runs on a fresh loop, `ainvoke` on the caller's)."""

    def __init__(self, base_url: str, api_key: str, timeout_s: float) -> None:
        self._base = base_url.rstrip("/")
        self._headers = {"X-API-Key": api_key}
        self._timeout = timeout_s

    async def _post(self, path: str, body: BaseModel) -> dict[str, Any]:
        async with httpx.AsyncClient(base_url=self._base, headers=self._headers, timeout=self._timeout) as client:
            response = await client.post(path, json=body.model_dump(mode="json", exclude_none=True))
        if response.status_code >= 400:
            try:
                detail = str(response.json().get("detail", response.text))
            except ValueError:
                detail = response.text
            raise DtRagError(response.status_code, detail)
        return response.json()

    async def search(self, request: SearchRequest) -> dict[str, Any]:
        return await self._post("/api/v1/search", request)

    async def answer(self, request: AnswerIn) -> dict[str, Any]:
        return await self._post("/answer", request)

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run(coro)

    async def arun(self, coro: Coroutine[Any, Any, T]) -> T:
        return await coro

    def close(self) -> None:
        pass


class _LoopThread:
    """One event loop on a thread of its own: a runtime's pooled connections belong to the loop that
    opened them, so every call on a runtime the retriever built runs on this one loop."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="dtrag-langchain", daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    async def arun(self, coro: Coroutine[Any, Any, T]) -> T:
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self.loop))

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join()
        self.loop.close()


class _InProcessBackend:
    """The services themselves, as `dtrag answer` calls them. A runtime you pass stays yours: async
    calls run on your loop and sync calls on a private one (so use it from one side); a runtime built
    here from settings lives on the private loop and `close()` releases it."""

    def __init__(self, runtime: Runtime | None, settings: Settings | None) -> None:
        self._loop = _LoopThread()
        self._owned = runtime is None
        self._runtime = runtime if runtime is not None else self._loop.run(self._build(settings))

    @staticmethod
    async def _build(settings: Settings | None) -> Runtime:
        return build_runtime(settings)

    async def search(self, request: SearchRequest) -> dict[str, Any]:
        filters = to_filters(request.filters, EVERYTHING.narrowed(request.collections))
        result = await self._runtime.search.search(request.q, request.final_topk, filters, request.strategy,
                                                   cacheable=True)
        return {"strategy": result.strategy,
                "hits": [{"chunk_id": h.chunk_id, "doc_id": h.doc_id, "score": h.score, "text": h.text,
                          "title": h.title, "source_url": h.source_url, "taxonomy_path": h.taxonomy_path,
                          "collection": h.collection} for h in result.hits]}

    async def answer(self, request: AnswerIn) -> dict[str, Any]:
        pipeline = self._runtime.pipelines.get(request.provider)
        result = await pipeline.execute(AnswerRequest(question=request.q, mode=request.mode,
                                                      top_k=request.final_topk,
                                                      filters=to_filters(request.filters,
                                                                         EVERYTHING.narrowed(request.collections)),
                                                      strategy=request.strategy, provider=request.provider))
        return result.model_dump(mode="json")

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self._loop.run(coro)

    async def arun(self, coro: Coroutine[Any, Any, T]) -> T:
        return await (self._loop.arun(coro) if self._owned else coro)

    def close(self) -> None:
        if self._owned:
            self._loop.run(self._runtime.close())
        self._loop.stop()


def _documents(body: dict[str, Any]) -> list[Document]:
    return [Document(page_content=h["text"], id=str(h["chunk_id"]),
                     metadata={"chunk_id": h["chunk_id"], "doc_id": h["doc_id"], "score": h["score"],
                               "strategy": body["strategy"], "source_url": h.get("source_url"),
                               "title": h.get("title", ""), "taxonomy_path": h.get("taxonomy_path", ""),
                               "collection": h.get("collection", "")})
            for h in body["hits"]]


class DtRagRetriever(BaseRetriever):
    """DT-RAG's hybrid search as a LangChain retriever.

    Over HTTP: `DtRagRetriever(base_url="http://host:8000", api_key="dtr_...")` (a read key).
    In-process: `DtRagRetriever(runtime=runtime)` or `DtRagRetriever(settings=load_settings(...))`
    (omit both for the environment's settings). Call `close()` when done with an in-process one.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    base_url: str | None = None
    api_key: SecretStr | None = Field(None, description="a read key; never shown in the retriever's repr or logs")
    runtime: Any = Field(None, description="an `apps.runtime.Runtime` (its dataclass is no pydantic type)")
    settings: Settings | None = None
    top_k: int = Field(5, ge=1, le=100)
    strategy: str | None = Field(None, description="bm25 | dense | hybrid_rrf | hybrid_cc; default from settings")
    filters: dict[str, Any] | None = Field(None, description="as the search API's `filters`")
    collections: list[str] | None = Field(None, description="search only these (the key's must allow them)")
    timeout_s: float = 60.0

    _backend: _Backend = PrivateAttr()

    @field_validator("runtime")
    @classmethod
    def _is_runtime(cls, value: Any) -> Runtime | None:
        if value is not None and not isinstance(value, Runtime):
            raise ValueError("runtime must be an apps.runtime.Runtime")
        return value

    @model_validator(mode="after")
    def _connect(self) -> DtRagRetriever:
        if self.base_url is not None:
            if self.api_key is None or not self.api_key.get_secret_value():
                raise ValueError("an HTTP retriever needs api_key (a read key)")
            if self.runtime is not None or self.settings is not None:
                raise ValueError("give base_url or runtime/settings, not both")
            self._backend = _HttpBackend(self.base_url, self.api_key.get_secret_value(), self.timeout_s)
        else:
            self._backend = _InProcessBackend(self.runtime, self.settings)
        return self

    def _request(self, query: str) -> SearchRequest:
        return SearchRequest(q=query, final_topk=self.top_k, filters=self.filters, strategy=self.strategy,
                             collections=self.collections)

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun) -> list[Document]:
        return _documents(self._backend.run(self._backend.search(self._request(query))))

    async def _aget_relevant_documents(self, query: str, *,
                                       run_manager: AsyncCallbackManagerForRetrieverRun) -> list[Document]:
        return _documents(await self._backend.arun(self._backend.search(self._request(query))))

    def close(self) -> None:
        self._backend.close()


class _AnswerArgs(BaseModel):
    question: str = Field(description="the question, in English or Korean")


def _answer_text(body: dict[str, Any]) -> str:
    """The answer with its numbered sources: what an agent needs to quote and cite."""
    lines = [body["answer"], "", "Sources:"]
    lines += [f"[{i}] {s['title']} (chunk {s['chunk_id']}{', ' + s['source_url'] if s.get('source_url') else ''})"
              for i, s in enumerate(body["sources"], start=1)]
    return "\n".join(lines)


def answer_tool(retriever: DtRagRetriever, mode: Literal["answer", "summary", "keypoints", "debate"] = "answer",
                provider: Literal["extractive", "gemini", "openai", "local"] | None = None,
                name: str = "dtrag_answer") -> BaseTool:
    """`POST /answer` as a tool, on the retriever's backend (same server and key, or same runtime) and
    its `top_k`, `filters` and `strategy`. The tool's content is the answer with its sources; the
    artifact is the whole response (citations, confidence, validation, usage)."""
    backend = retriever._backend

    def request(question: str) -> AnswerIn:
        return AnswerIn(q=question, mode=mode, final_topk=min(retriever.top_k, 20), filters=retriever.filters,
                        strategy=retriever.strategy, provider=provider, collections=retriever.collections)

    def call(question: str) -> tuple[str, dict[str, Any]]:
        body = backend.run(backend.answer(request(question)))
        return _answer_text(body), body

    async def acall(question: str) -> tuple[str, dict[str, Any]]:
        body = await backend.arun(backend.answer(request(question)))
        return _answer_text(body), body

    return StructuredTool.from_function(
        func=call, coroutine=acall, name=name, args_schema=_AnswerArgs, response_format="content_and_artifact",
        description="Answers a question from the team's own documents, with numbered sources. "
                    "Use it for questions about the indexed documents.")
