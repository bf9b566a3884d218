"""What the answer and search routes do for a question asked in a conversation: read its recent turns
(404 for a conversation the key does not own), and store the turn once it is answered, before the
response (or a stream's last event) leaves, so a follow-up sent right after it sees it."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from fastapi import HTTPException

from apps.core.api_keys import KeyInfo
from apps.llm.factory import ProviderUnavailableError
from apps.orchestration.src.answer_models import AnswerResponse
from apps.orchestration.src.conversations import (
    FollowupRewrite,
    FollowupRewriter,
    HistoryTurn,
    NewTurn,
    UnknownConversationError,
    turn_subject,
)
from apps.orchestration.src.conversations.rewrite import previous_subject
from apps.runtime import Runtime
from apps.search.types import Hit, SearchFilters


async def history(runtime: Runtime, key: KeyInfo, conversation_id: str | None) -> tuple[HistoryTurn, ...]:
    if conversation_id is None:
        return ()
    try:
        return await runtime.conversations.history(key.id, conversation_id)
    except UnknownConversationError as exc:
        raise HTTPException(404, str(exc)) from None


async def _append(runtime: Runtime, key: KeyInfo, conversation_id: str, turn: NewTurn) -> None:
    try:
        await runtime.conversations.append(key.id, conversation_id, turn)
    except UnknownConversationError as exc:  # deleted while the question was answered
        raise HTTPException(404, str(exc)) from None


async def store_answer(runtime: Runtime, key: KeyInfo, conversation_id: str | None, past: Sequence[HistoryTurn],
                       result: AnswerResponse, streaming: bool = False) -> AnswerResponse:
    """The answer as a turn of the conversation; returns the response naming it. A conversation deleted
    while it was answered is a 404, or, once a stream has begun, an answer that names no conversation."""
    if conversation_id is None:
        return result
    rewritten = result.rewritten_question
    standalone = rewritten or result.question
    titles = [s.title for s in result.sources]
    carried = previous_subject(past)[0] if rewritten else None
    sources = [{"chunk_id": s.chunk_id, "doc_id": s.doc_id, "title": s.title, "source_url": s.source_url,
                "snippet": s.snippet} for s in result.sources]
    try:
        await _append(runtime, key, conversation_id, NewTurn(
            result.request_id, "answer", result.question, rewritten, turn_subject(standalone, titles, carried),
            result.answer, sources))
    except HTTPException:
        if not streaming:
            raise
        return result
    return result.model_copy(update={"conversation_id": conversation_id})


def _rewriter(runtime: Runtime) -> FollowupRewriter:
    """The default answer provider's rewriter (its model, if it has one); the rules' when it cannot be built."""
    try:
        return runtime.pipelines.get().rewriter
    except ProviderUnavailableError:
        return FollowupRewriter(search=runtime.search)


async def rewrite_query(runtime: Runtime, question: str, past: Sequence[HistoryTurn],
                        filters: SearchFilters) -> FollowupRewrite:
    """A search's follow-up made standalone, within REWRITE_TIMEOUT_MS (after it: the rules' rewrite)."""
    rewriter = _rewriter(runtime)
    if not past:
        return rewriter.rule(question, past)
    try:
        return await asyncio.wait_for(rewriter.rewrite(question, past, filters),
                                      runtime.settings.rewrite_timeout_ms / 1000)
    except TimeoutError:
        return rewriter.rule(question, past, fell_back="timed out")


async def store_search(runtime: Runtime, key: KeyInfo, conversation_id: str | None, request_id: str, question: str,
                       rewrite: FollowupRewrite, hits: Sequence[Hit]) -> None:
    if conversation_id is None:
        return
    standalone = rewrite.question
    sources = [{"chunk_id": h.chunk_id, "doc_id": h.doc_id, "title": h.title, "source_url": h.source_url,
                "snippet": h.text[:300]} for h in hits]
    await _append(runtime, key, conversation_id, NewTurn(
        request_id, "search", question, standalone if rewrite.rewritten else None,
        turn_subject(standalone, [h.title for h in hits], rewrite.subject), sources=sources))
