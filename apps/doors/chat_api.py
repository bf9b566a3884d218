"""An OpenAI-compatible chat API over the documents: `POST /v1/chat/completions`, `GET /v1/models`, so
Open WebUI or any OpenAI client chats with DT-RAG (the API key as the bearer token).

- One model per answer mode: `dtrag-answer`, `dtrag-summary`, `dtrag-keypoints`, `dtrag-debate`.
- The last message must be the user's: it is the question. Earlier user turns, with the assistant's
  replies, are the conversation's history (the last CONVERSATION_HISTORY_TURNS): a follow-up ("and in
  2023?") is rewritten against them into a standalone question, as REST's conversations do.
- The reply's content is the answer with its [n] markers; `sources` (an extension field, in the reply and
  in a stream's last chunk) lists what [n] points at: {index, chunk_id, doc_id, title, source_url,
  snippet}; `dtrag` holds the request id, the confidence and the per-sentence citations.
- `stream: true` answers in OpenAI's Server-Sent Events chunks as the answer is composed, then the
  `[DONE]` line. Sampling parameters (temperature, max_tokens, ...) are accepted and ignored.
- Extension request fields: `top_k` (passages, 1-20), `filters` (as /api/v1/search), `collections`.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from apps.api.deps import RuntimeDep
from apps.api.schemas import AnswerIn, SearchFiltersIn
from apps.core.api_keys import KeyInfo
from apps.doors import operations
from apps.doors.auth import chat_key
from apps.doors.errors import DoorError
from apps.doors.observe import observed
from apps.doors.operations import Caller, record_answer
from apps.orchestration.src.answer_models import AnswerResponse
from apps.orchestration.src.conversations.rewrite import turn_subject
from apps.orchestration.src.conversations.types import HistoryTurn

router = APIRouter(prefix="/v1", tags=["chat (OpenAI-compatible)"])

MODELS = {"dtrag-answer": "answer", "dtrag-summary": "summary", "dtrag-keypoints": "keypoints",
          "dtrag-debate": "debate"}
ChatKey = Annotated[KeyInfo, Depends(chat_key)]


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: str = Field(..., max_length=50)
    text: str | None = Field(None, max_length=100_000)


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")  # name, tool_call_id, ...: accepted, unused
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: (Annotated[str, Field(max_length=100_000)] | Annotated[list[ContentPart], Field(max_length=1000)]
              | None) = None

    def text(self) -> str:
        if isinstance(self.content, list):
            return "\n".join(p.text for p in self.content if p.type == "text" and p.text)
        return self.content or ""


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="allow")  # OpenAI's sampling parameters: accepted, ignored
    model: str = Field(..., min_length=1, max_length=100)
    messages: list[ChatMessage] = Field(..., min_length=1, max_length=500)
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    top_k: int = Field(5, ge=1, le=20, description="extension: passages to compose from")
    filters: SearchFiltersIn | None = Field(None, description="extension: as POST /api/v1/search")
    collections: list[str] | None = Field(None, max_length=100, description="extension: collections to answer from")


def _model_entry(name: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": 0, "owned_by": "dt-rag"}


@router.get("/models", summary="The chat models: one per answer mode")
async def models(_: ChatKey) -> dict[str, Any]:
    return {"object": "list", "data": [_model_entry(m) for m in MODELS]}


def question_of(messages: list[ChatMessage]) -> str:
    if messages[-1].role != "user" or not messages[-1].text().strip():
        raise HTTPException(422, "the last message must be the user's question, with text")
    question = messages[-1].text().strip()
    if len(question) > 4000:
        raise HTTPException(422, "the question is longer than 4000 characters")
    return question


def history_of(messages: list[ChatMessage], turns: int) -> tuple[HistoryTurn, ...]:
    """The earlier user questions, each with the assistant's reply after it, as conversation turns."""
    history = []
    for i, message in enumerate(messages[:-1]):
        question = message.text().strip() if message.role == "user" else ""
        if not question:
            continue
        following = messages[i + 1]  # the last message is the question: an earlier one has a next
        answer = following.text() if following.role == "assistant" else ""
        history.append(HistoryTurn(question=question, standalone=question, subject=turn_subject(question, (), None),
                                   answer=answer))
    return tuple(history[-turns:]) if turns else ()


def _sources(result: AnswerResponse) -> list[dict[str, Any]]:
    return [{"index": n, **s.model_dump(mode="json")} for n, s in enumerate(result.sources, start=1)]


def _extension(result: AnswerResponse) -> dict[str, Any]:
    return {"request_id": result.request_id, "confidence": result.confidence,
            "rewritten_question": result.rewritten_question,
            "citations": [c.model_dump(mode="json") for c in result.citations], "degraded": result.degraded}


def _usage(result: AnswerResponse) -> dict[str, int]:
    return {"prompt_tokens": result.usage.input_tokens, "completion_tokens": result.usage.output_tokens,
            "total_tokens": result.usage.input_tokens + result.usage.output_tokens}


@router.post("/chat/completions", summary="Chat with the documents (OpenAI-compatible)",
             responses={200: {"content": {"text/event-stream": {}},
                              "description": "a chat.completion, or with stream=true chat.completion.chunk events"}})
async def chat_completions(body: ChatRequest, request: Request, runtime: RuntimeDep, key: ChatKey) -> Any:
    mode = MODELS.get(body.model)
    if mode is None:
        raise HTTPException(404, f"no model {body.model!r}; GET /v1/models lists {', '.join(MODELS)}")
    question = question_of(body.messages)
    history = history_of(body.messages, runtime.settings.conversation_history_turns)
    try:
        answer_in = AnswerIn(q=question, mode=mode, final_topk=body.top_k, filters=body.filters,  # type: ignore[arg-type]
                             collections=body.collections)
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    caller = Caller.of_request(key, request.scope["state"])
    completion_id, created = f"chatcmpl-{caller.request_id}", int(time.time())
    if not body.stream:
        with observed("chat", mode, request_id=caller.request_id):
            try:
                result = await operations.answer(runtime, answer_in, caller, history)
            except DoorError as exc:
                raise exc.to_http() from None
        record_answer(request.state, result)
        return {"id": completion_id, "object": "chat.completion", "created": created, "model": body.model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": result.answer},
                             "finish_reason": "stop"}],
                "usage": _usage(result), "sources": _sources(result), "dtrag": _extension(result)}
    try:
        events = await operations.answer_events(runtime, answer_in, caller, history)
    except DoorError as exc:
        raise exc.to_http() from None
    include_usage = bool((body.stream_options or {}).get("include_usage"))

    def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> str:
        data = {"id": completion_id, "object": "chat.completion.chunk", "created": created, "model": body.model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}
        return f"data: {json.dumps(data, ensure_ascii=False)}\n\n"

    async def stream() -> AsyncIterator[str]:
        with observed("chat", f"{mode}_stream", request_id=caller.request_id):
            yield chunk({"role": "assistant", "content": ""})
            streamed = ""  # the text sent since the last reset
            async for event in events:
                if "token" in event and mode != "debate":  # a debate's answer is not the single pass's tokens
                    streamed += event["token"]
                    yield chunk({"content": event["token"]})
                elif "reset" in event and streamed:
                    # A provider failed mid-stream and the extractive composer starts over: what was sent
                    # cannot be taken back, so the new answer follows after a blank line.
                    yield chunk({"content": "\n\n"})
                    streamed = ""
                elif "final" in event:
                    result: AnswerResponse = event["final"]
                    record_answer(request.state, result)
                    if streamed.strip() != result.answer.strip():
                        yield chunk({"content": ("\n\n" if streamed else "") + result.answer})
                    yield chunk({}, "stop", sources=_sources(result), dtrag=_extension(result))
                    if include_usage:
                        data = {"id": completion_id, "object": "chat.completion.chunk", "created": created,
                                "model": body.model, "choices": [], "usage": _usage(result)}
                        yield f"data: {json.dumps(data)}\n\n"
            yield "data: [DONE]\n\n"

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
