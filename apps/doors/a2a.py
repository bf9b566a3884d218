"""DT-RAG as an A2A agent (the official `a2a-sdk`), with the `agent_messaging` flag on.

- The agent card at `/.well-known/agent-card.json` is public: it names the skills (`answer`, `search`),
  the JSON-RPC interface at /a2a and the auth scheme (an API key in X-API-Key, or as a bearer token).
- Tasks at /a2a (`SendMessage`, `SendStreamingMessage`, `GetTask`, ...) need a read key (`KeyGate`, the
  REST check). Each task is owned by its key: another key cannot read it.
- A message's text is the question; its metadata `{"skill": "search"}` asks for hits instead of an
  answer. An answer task streams the answer as the `answer` artifact (chunks appended as they are
  composed, then the final text), then a `citations` artifact: {answer, citations, sources, request_id}.
- Flag off for a request: the card and the endpoint answer 404.

Tasks live in the database (`a2a_tasks.py`, the SDK's `DatabaseTaskStore`): any worker reads a task
another ran. `SendMessage` returns the finished task with its artifacts, so a client needs nothing else.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from a2a.auth.user import User
from a2a.helpers.proto_helpers import new_data_part, new_text_part
from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.context import ServerCallContext
from a2a.server.events.event_queue_v2 import EventQueue
from a2a.server.request_handlers import DefaultRequestHandler
from a2a.server.request_handlers.response_helpers import agent_card_to_dict
from a2a.server.routes import DefaultServerCallContextBuilder, create_jsonrpc_routes
from a2a.server.tasks import TaskStore, TaskUpdater
from a2a.types import (
    AgentCapabilities,
    AgentCard,
    AgentInterface,
    AgentProvider,
    AgentSkill,
    APIKeySecurityScheme,
    HTTPAuthSecurityScheme,
    SecurityRequirement,
    SecurityScheme,
    StringList,
    Task,
    TaskState,
    TaskStatus,
)
from fastapi import FastAPI
from google.protobuf.json_format import MessageToDict
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Scope

from apps import __version__
from apps.api.deps import current_key
from apps.api.schemas import AnswerIn, SearchRequest
from apps.core.api_keys import KeyInfo
from apps.core.config import Settings
from apps.core.visibility import request_visibility
from apps.doors import auth, operations
from apps.doors.a2a_tasks import ServingTaskStore
from apps.doors.errors import DoorError, refusals
from apps.doors.kit import DoorKit
from apps.doors.observe import observed
from apps.doors.operations import Caller
from apps.runtime import Runtime

log = logging.getLogger(__name__)

CARD_PATH = "/.well-known/agent-card.json"
RPC_PATH = "/a2a"
FLAG = "agent_messaging"


def flag_on(scope: Scope) -> bool:
    assignment = scope.get("state", {}).get("assignment")
    return bool(assignment is not None and assignment.flags.get(FLAG, False))


def agent_card(base_url: str) -> AgentCard:
    base = base_url.rstrip("/")
    return AgentCard(
        name="DT-RAG",
        description="Answers questions from a team's own documents (English and Korean), with citations; "
                    "or finds the passages for a query.",
        provider=AgentProvider(organization="DT-RAG", url=base),
        version=__version__,
        documentation_url=f"{base}/docs",
        capabilities=AgentCapabilities(streaming=True, push_notifications=False),
        default_input_modes=["text/plain"],
        default_output_modes=["text/plain", "application/json"],
        supported_interfaces=[AgentInterface(protocol_binding="JSONRPC", protocol_version="1.0",
                                             url=f"{base}{RPC_PATH}")],
        security_schemes={
            "apiKey": SecurityScheme(api_key_security_scheme=APIKeySecurityScheme(
                location="header", name="X-API-Key", description="a DT-RAG API key (`dtrag keys create`)")),
            "bearer": SecurityScheme(http_auth_security_scheme=HTTPAuthSecurityScheme(
                scheme="Bearer", description="the same API key as a bearer token")),
        },
        security_requirements=[SecurityRequirement(schemes={"apiKey": StringList()}),
                               SecurityRequirement(schemes={"bearer": StringList()})],
        skills=[
            AgentSkill(id="answer", name="Answer from the documents",
                       description="A grounded answer whose sentences cite their sources ([n]); artifacts "
                                   "`answer` (text) and `citations` (answer, citations, sources).",
                       tags=["rag", "qa", "citations"], examples=["What causes vitamin D deficiency?"],
                       input_modes=["text/plain"], output_modes=["text/plain", "application/json"]),
            AgentSkill(id="search", name="Search the documents",
                       description="Hybrid search: hits with ids, titles, text and scores (artifact `hits`). "
                                   'Ask for it with message metadata {"skill": "search"}.',
                       tags=["search", "retrieval"], examples=["machine learning"],
                       input_modes=["text/plain"], output_modes=["application/json"]),
        ],
    )


class KeyUser(User):
    """The A2A SDK's user for a DT-RAG key: tasks are scoped to it."""

    def __init__(self, key: KeyInfo) -> None:
        self.key = key

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def user_name(self) -> str:
        return self.key.id


class CallerContext(DefaultServerCallContextBuilder):
    """The SDK's call context (headers: the protocol version) with the admitted request's key (KeyGate), id
    and flags (request context)."""

    def build(self, request: Request) -> ServerCallContext:
        context = super().build(request)
        state = request.scope.get("state", {})
        key: KeyInfo = state[auth.KEY_STATE]
        context.user = KeyUser(key)
        context.state["caller"] = Caller.of_request(key, state)
        return context


def _skill(context: RequestContext) -> str:
    metadata = dict(context.metadata or {})
    if context.message is not None and context.message.HasField("metadata"):
        metadata |= MessageToDict(context.message.metadata)
    return "search" if metadata.get("skill") == "search" else "answer"


class AnswerAgent(AgentExecutor):
    def __init__(self, kit_of: Callable[[], DoorKit | None]) -> None:
        self.kit_of = kit_of

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        task_id, context_id = context.task_id or "", context.context_id or ""
        if context.current_task is None and context.message is not None:
            await event_queue.enqueue_event(Task(id=task_id, context_id=context_id, history=[context.message],
                                                 status=TaskStatus(state=TaskState.TASK_STATE_SUBMITTED)))
        updater = TaskUpdater(event_queue, task_id, context_id)
        caller: Caller = context.call_context.state["caller"]
        current_key.set(caller.key)  # the answer graph's tool calls check it
        request_visibility.set(caller.visibility)  # this task may run outside the request's context
        skill = _skill(context)
        question = context.get_user_input().strip()
        kit = self.kit_of()
        await updater.start_work()
        try:
            with observed("a2a", skill, request_id=caller.request_id), refusals():
                if kit is None:
                    raise DoorError(503, "starting up; retry shortly")
                if not question:
                    raise DoorError(422, "the message has no text: send the question as a text part")
                if skill == "search":
                    await self._search(kit.runtime, question, caller, updater)
                else:
                    await self._answer(kit.runtime, question, caller, updater)
        except DoorError as exc:
            await updater.failed(updater.new_agent_message([new_text_part(f"{exc.status}: {exc.detail}")]))
            return
        except Exception:
            log.exception("A2A task failed", extra={"request_id": caller.request_id})
            await updater.failed(updater.new_agent_message([new_text_part(
                f"500: internal error; quote request id {caller.request_id} when reporting it")]))
            return
        await updater.complete()

    async def _search(self, runtime: Runtime, question: str, caller: Caller, updater: TaskUpdater) -> None:
        try:
            body = SearchRequest(q=question[:10_000], final_topk=10)
        except ValueError as exc:
            raise DoorError(422, str(exc)) from None
        result = await operations.search(runtime, body, caller)
        await updater.add_artifact([new_data_part(result.model_dump(mode="json"))], name="hits", last_chunk=True)

    async def _answer(self, runtime: Runtime, question: str, caller: Caller, updater: TaskUpdater) -> None:
        try:
            body = AnswerIn(q=question[:4000])
        except ValueError as exc:
            raise DoorError(422, str(exc)) from None
        events = await operations.answer_events(runtime, body, caller)
        artifact_id = f"answer-{caller.request_id}"
        sent = False
        async for event in events:
            if "token" in event:
                await updater.add_artifact([new_text_part(event["token"])], artifact_id=artifact_id, name="answer",
                                           append=sent, last_chunk=False)
                sent = True
            elif "reset" in event:
                sent = False  # the next chunk replaces what the failed provider sent
            elif "final" in event:
                final = event["final"]
                # The final text replaces the streamed draft (a debate or a cleanup may have changed it).
                await updater.add_artifact([new_text_part(final.answer)], artifact_id=artifact_id, name="answer",
                                           append=False, last_chunk=True)
                await updater.add_artifact([new_data_part(_citations(final))], name="citations", last_chunk=True)

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        await TaskUpdater(event_queue, context.task_id or "", context.context_id or "").cancel()


def _citations(final: Any) -> dict[str, Any]:
    out = final.model_dump(mode="json")
    return {k: out[k] for k in ("answer", "citations", "sources", "confidence", "request_id", "degraded_nodes")}


class A2ADoor:
    def __init__(self, kit_of: Callable[[], DoorKit | None], settings: Settings) -> None:
        self.kit_of = kit_of
        self.settings = settings
        card = agent_card(settings.a2a_public_url or "http://localhost:8000")

        def tasks() -> TaskStore | None:
            kit = kit_of()
            return kit.a2a_tasks if kit is not None else None

        self.handler = DefaultRequestHandler(agent_executor=AnswerAgent(kit_of), task_store=ServingTaskStore(tasks),
                                             agent_card=card)

    async def card(self, request: Request) -> Response:
        if not flag_on(request.scope):
            return JSONResponse({"detail": "Not Found"}, status_code=404)
        base = self.settings.a2a_public_url or str(request.base_url)
        return JSONResponse(agent_card_to_dict(agent_card(base)), headers={"Cache-Control": "public, max-age=300"})

    def mount(self, app: FastAPI, runtime_of: Callable[[], Runtime | None]) -> None:
        (rpc,) = create_jsonrpc_routes(self.handler, rpc_url=RPC_PATH, context_builder=CallerContext())
        app.router.routes.append(Route(CARD_PATH, self.card, methods=["GET"]))
        app.router.routes.append(Route(RPC_PATH, auth.KeyGate(rpc.app, runtime_of, enabled=flag_on), methods=["POST"]))
