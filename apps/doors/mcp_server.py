"""DT-RAG as an MCP server (the official `mcp` SDK, `MCPServer`): tools `search`, `answer`,
`get_document`, `list_collections`, `feedback` and the resource template `dtrag://documents/{id}`.

Two transports, one server definition:
- stdio, for desktop agents: `python -m apps.doors.mcp_server` (`dtrag mcp`); the key is DTRAG_API_KEY,
  checked at start and, with the rate limit, on every call;
- streamable HTTP at /mcp in the app (stateless, JSON answers, so any worker serves any request); `KeyGate`
  checks the key of every HTTP request (X-API-Key or a bearer token) before the SDK sees it.

Every tool calls `operations` (what the REST routes call) and answers what REST answers for the same
request. A middleware around every call counts it per door, sets who is calling, and with `tools_policy`
on passes it through the policy gate (unknown tool, allowlist, schema, hints) before the SDK runs it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Awaitable, Callable, Coroutine
from contextvars import ContextVar
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Annotated, Any, Literal, TypeVar

from mcp.server import MCPServer
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.mcpserver.exceptions import ResourceError, ToolError
from mcp.shared.exceptions import MCPError
from mcp.types import CallToolResult, TextContent, ToolAnnotations
from pydantic import BaseModel, Field, ValidationError

from apps import __version__
from apps.api.deps import current_key
from apps.api.schemas import AnswerIn, FeedbackIn, FeedbackOut, SearchFiltersIn, SearchRequest, SearchResponse
from apps.core.visibility import request_visibility
from apps.doors import auth, operations
from apps.doors.errors import DoorError, refusals
from apps.doors.kit import DoorKit
from apps.doors.observe import count_error, observed
from apps.doors.operations import Caller, DocumentText
from apps.doors.tool_policy import ToolFacts
from apps.doors.visibility import Collection
from apps.orchestration.src.answer_models import AnswerResponse
from apps.runtime import Runtime

log = logging.getLogger(__name__)
T = TypeVar("T")

INSTRUCTIONS = ("DT-RAG answers questions from a team's own documents (English and Korean). Use `search` for "
                "passages with ids and scores, `answer` for a grounded answer whose sentences cite its sources "
                "([n] marks the n-th source), `get_document` for a whole document, `feedback` to rate a "
                "search or answer by its request_id.")
READ_ONLY = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False)
# Feedback records a reward (a write), but only the first for a request counts and it deletes nothing.
RECORDS = ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=True, open_world_hint=False)

_caller: ContextVar[Caller | None] = ContextVar("mcp_caller", default=None)

Identify = Callable[[DoorKit, ServerRequestContext[Any, Any]], Awaitable[Caller]]


class Collections(BaseModel):
    collections: list[Collection]


def _current() -> Caller:
    caller = _caller.get()
    if caller is None:  # every call passes the middleware, which sets it
        raise ToolError("no caller: this call did not pass the door's key check")
    return caller


def _body(model: type[T], **fields: Any) -> T:
    """The REST request body the arguments stand for, validated as REST validates it."""
    try:
        return model(**{k: v for k, v in fields.items() if v is not None})  # type: ignore[call-arg]
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'arguments'}: {e['msg']}" for e in exc.errors())
        raise ToolError(f"invalid arguments: {problems}") from None


async def _run(work: Coroutine[Any, Any, T]) -> T:
    try:
        with refusals():
            return await work
    except DoorError as exc:
        raise ToolError(f"{exc.status}: {exc.detail}") from None


def http_identity() -> Identify:
    """Who calls over /mcp: the key KeyGate admitted and the request's id and flags (request context)."""

    async def identify(kit: DoorKit, ctx: ServerRequestContext[Any, Any]) -> Caller:
        state = ctx.request.scope.get("state", {}) if ctx.request is not None else {}
        key = state.get(auth.KEY_STATE)
        if key is None:
            raise DoorError(401, "missing API key: send X-API-Key or Authorization: Bearer", auth.CHALLENGE)
        return Caller.of_request(key, state)

    return identify


def stdio_identity(api_key: str) -> Identify:
    """Who calls over stdio: DTRAG_API_KEY, checked (with its rate limit) on every call."""

    async def identify(kit: DoorKit, ctx: ServerRequestContext[Any, Any]) -> Caller:
        state = SimpleNamespace()
        key = await auth.check(kit.runtime, api_key, state)
        return Caller.of_process(kit.runtime, key, state.visibility)

    return identify


@dataclass
class DoorMiddleware:
    """Around every tool call and resource read: metrics and logs per door, the caller, the policy gate."""

    server: MCPServer
    kit_of: Callable[[], DoorKit | None]
    door: str
    identify: Identify
    _facts: dict[str, ToolFacts] | None = None

    async def facts(self) -> dict[str, ToolFacts]:
        if self._facts is None:
            self._facts = {t.name: ToolFacts(t.name, dict(t.input_schema or {}),
                                             bool(t.annotations and t.annotations.destructive_hint),
                                             bool(t.annotations and t.annotations.open_world_hint))
                           for t in await self.server.list_tools()}
        return self._facts

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        if ctx.method not in ("tools/call", "resources/read"):
            return await call_next(ctx)
        kit = self.kit_of()
        params = dict(ctx.params or {})
        facts = await self.facts()
        is_tool = ctx.method == "tools/call"
        name = str(params.get("name", ""))
        operation = (name if name in facts else "unknown") if is_tool else "read_resource"
        with observed(self.door, operation):
            try:
                if kit is None:
                    raise DoorError(503, "starting up; retry shortly")
                caller = await self.identify(kit, ctx)
                if is_tool and caller.flags.get("tools_policy", False):
                    arguments = params.get("arguments") or {}
                    arguments = arguments if isinstance(arguments, dict) else {"arguments": arguments}
                    verdict = kit.gate.judge("in", caller.flags, caller.key, name, facts.get(name), arguments)
                    kit.gate.record(verdict, direction="in", request_id=caller.request_id, key=caller.key, name=name,
                                    arguments=arguments, outcome=None if not verdict.allowed else "ok")
                    if not verdict.allowed:
                        raise DoorError(403, f"refused by the tool policy: {verdict.reason}")
            except DoorError as exc:
                count_error(self.door, operation, "client" if exc.status < 500 else "server")
                if is_tool:
                    return CallToolResult(content=[TextContent(type="text", text=f"{exc.status}: {exc.detail}")],
                                          is_error=True)
                raise MCPError(-32001 if exc.status in (401, 403) else -32603, f"{exc.status}: {exc.detail}") from None
            # The handler runs in the SDK's task, not the HTTP request's: what the key check set there is
            # set again for it (the caller, the key the graph's tool calls check, what searches may see).
            tokens = (_caller.set(caller), current_key.set(caller.key), request_visibility.set(caller.visibility))
            try:
                result = await call_next(ctx)
            finally:
                for var, token in zip((_caller, current_key, request_visibility), tokens, strict=True):
                    var.reset(token)  # type: ignore[attr-defined]
            if isinstance(result, CallToolResult) and result.is_error:
                count_error(self.door, operation, "client")
            return result


def build_server(kit_of: Callable[[], DoorKit | None], door: str, identify: Identify) -> MCPServer:
    mcp: MCPServer = MCPServer("dt-rag", title="DT-RAG", version=__version__, instructions=INSTRUCTIONS,
                               description="Search and grounded answers over a team's own documents")

    def runtime() -> Runtime:
        kit = kit_of()
        if kit is None:
            raise ToolError("503: starting up; retry shortly")
        return kit.runtime

    @mcp.tool(title="Search the documents", annotations=READ_ONLY)
    async def search(
        query: Annotated[str, Field(min_length=1, max_length=10_000, description="what to look for (English, Korean)")],
        top_k: Annotated[int, Field(ge=1, le=100, description="hits to return")] = 5,
        collections: Annotated[list[str] | None, Field(description="collections to search; default every one "
                                                                    "the key sees (see list_collections)")] = None,
        filters: Annotated[SearchFiltersIn | None, Field(description="taxonomy_path, language, doc_ids, metadata")]
        = None,
        strategy: Annotated[str | None, Field(description="bm25 | dense | hybrid_rrf | hybrid_cc")] = None,
        plan: Annotated[bool | None, Field(description="search each part of a multi-part query; default: the "
                                                       "server's meta_planner flag")] = None,
    ) -> SearchResponse:
        """Hybrid search (BM25 and dense vectors, fused) over the documents: hits with chunk and document
        ids, titles, text and scores; the same hits POST /api/v1/search returns."""
        body = _body(SearchRequest, q=query, final_topk=top_k, filters=filters, strategy=strategy, plan=plan,
                     collections=collections)
        return await _run(operations.search(runtime(), body, _current()))

    @mcp.tool(title="Answer from the documents", annotations=READ_ONLY)
    async def answer(
        question: Annotated[str, Field(min_length=1, max_length=4000, description="the question, English or Korean")],
        mode: Literal["answer", "summary", "keypoints", "debate"] = "answer",
        collections: Annotated[list[str] | None, Field(description="collections to answer from")] = None,
        top_k: Annotated[int, Field(ge=1, le=20, description="passages to compose from")] = 5,
        filters: SearchFiltersIn | None = None,
    ) -> AnswerResponse:
        """A grounded answer: the answer text with [n] markers, per-sentence citations (chunk ids, support)
        and the sources; "not found in the documents" when nothing supports one."""
        body = _body(AnswerIn, q=question, mode=mode, final_topk=top_k, filters=filters, collections=collections)
        return await _run(operations.answer(runtime(), body, _current()))

    @mcp.tool(title="Get a document", annotations=READ_ONLY)
    async def get_document(
        document_id: Annotated[str, Field(min_length=1, max_length=100, description="a hit's or source's doc_id")],
    ) -> DocumentText:
        """A document's metadata and its chunks in order (the resource dtrag://documents/{id} is its text)."""
        return await _run(operations.get_document(runtime(), document_id, _current()))

    @mcp.tool(title="List collections", annotations=READ_ONLY)
    async def list_collections() -> Collections:
        """The collections this key may search, with the documents in each it may see."""
        return Collections(collections=await _run(operations.list_collections(runtime(), _current())))

    @mcp.tool(title="Rate a search or answer", annotations=RECORDS)
    async def feedback(
        request_id: Annotated[str, Field(min_length=1, max_length=64, description="from a search or answer")],
        rating: Annotated[float | None, Field(ge=-1, le=1, description="-1 (useless) .. 1 (perfect)")] = None,
        helpful: bool | None = None,
        relevant_chunk_ids: Annotated[list[int] | None, Field(max_length=1000)] = None,
    ) -> FeedbackOut:
        """The reward for the strategy that served a search or answer; the first feedback stands."""
        body = _body(FeedbackIn, request_id=request_id, rating=rating, helpful=helpful,
                     relevant_chunk_ids=relevant_chunk_ids)
        return await _run(operations.feedback(runtime(), body, _current()))

    @mcp.resource("dtrag://documents/{document_id}", name="document", title="A document's text",
                  mime_type="text/plain", description="The document's chunks in order, as text")
    async def document_text(document_id: str) -> str:
        caller = _caller.get()
        if caller is None:
            raise ResourceError("no caller: this read did not pass the door's key check")
        try:
            doc = await operations.get_document(runtime(), document_id, caller)
        except DoorError as exc:
            raise ResourceError(f"{exc.status}: {exc.detail}") from None
        return f"{doc.title}\n\n" + "\n\n".join(c.text for c in doc.chunks)

    mcp.middleware.append(DoorMiddleware(mcp, kit_of, door, identify))
    return mcp


async def serve_stdio() -> int:
    """`dtrag mcp`: the MCP server on stdin/stdout for one desktop agent, as DTRAG_API_KEY."""
    from apps.core.config import get_settings
    from apps.core.logging import configure_logging
    from apps.runtime import build_runtime

    settings = get_settings()
    configure_logging(settings.log_level)  # to stderr: stdout carries the protocol
    api_key = os.environ.get("DTRAG_API_KEY", "")
    if not api_key:
        print("dtrag mcp: set DTRAG_API_KEY to an API key (`dtrag keys create --scope read`)", file=sys.stderr)
        return 2
    async with build_runtime(settings) as runtime:
        if await runtime.keys.verify(api_key) is None:
            print("dtrag mcp: DTRAG_API_KEY is not a valid, unrevoked, unexpired API key", file=sys.stderr)
            return 2
        await runtime.warm_up()
        await runtime.flags.refresh(force=True)
        runtime.flags.start()
        runtime.bandit.start()
        kit = DoorKit(runtime)
        kit.start()
        try:
            await build_server(lambda: kit, "mcp_stdio", stdio_identity(api_key)).run_stdio_async()
        finally:
            await kit.close()
    return 0


def main() -> None:
    sys.exit(asyncio.run(serve_stdio()))


if __name__ == "__main__":
    main()
