"""Conversations and their turns, each owned by one API key: another key's conversation looks unknown.

A conversation keeps its newest `max_turns` turns (an append drops what falls off the end); a follow-up
is read against the newest `history_turns`. Retention prunes conversations idle for
CONVERSATION_RETENTION_DAYS (apps/core/retention.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from apps.core.db import write_transaction
from apps.core.models import Conversation, ConversationTurn, Feedback, new_id, utcnow
from apps.orchestration.src.conversations.types import HistoryTurn

TITLE_CHARS = 120


class UnknownConversationError(LookupError):
    """No conversation with this id belongs to the key (it never existed, was deleted or pruned)."""


@dataclass(frozen=True)
class NewTurn:
    request_id: str
    endpoint: str  # answer | search
    question: str
    rewritten: str | None  # None: the question stood alone
    subject: str | None
    answer: str = ""
    sources: Sequence[dict[str, Any]] = field(default_factory=list)


def _conversation(row: Any, turns: int | None = None) -> dict[str, Any]:
    out = {"id": row.id, "title": row.title, "created_at": row.created_at, "updated_at": row.updated_at}
    if turns is not None:
        out["turns"] = turns
    return out


class ConversationStore:
    def __init__(self, engine: AsyncEngine, max_turns: int, history_turns: int) -> None:
        self._engine = engine
        self.max_turns = max_turns
        self.history_turns = history_turns

    async def create(self, key_id: str) -> dict[str, Any]:
        now = utcnow()
        values = {"id": new_id(), "key_id": key_id, "title": "", "created_at": now, "updated_at": now}
        async with write_transaction(self._engine) as conn:
            await conn.execute(Conversation.__table__.insert().values(**values))
        return {"id": values["id"], "title": "", "created_at": now, "updated_at": now, "turns": 0}

    async def _owned(self, conn: AsyncConnection, key_id: str, conversation_id: str) -> Any:
        row = (await conn.execute(select(Conversation).where(
            Conversation.id == conversation_id, Conversation.key_id == key_id))).first()
        if row is None:
            raise UnknownConversationError(f"no conversation {conversation_id!r} for this key")
        return row

    async def history(self, key_id: str, conversation_id: str) -> tuple[HistoryTurn, ...]:
        """The newest `history_turns` turns, oldest first; raises `UnknownConversationError`."""
        t = ConversationTurn
        async with self._engine.connect() as conn:
            await self._owned(conn, key_id, conversation_id)
            rows = (await conn.execute(
                select(t.question, t.rewritten, t.subject, t.answer, t.sources)
                .where(t.conversation_id == conversation_id).order_by(t.id.desc()).limit(self.history_turns)
            )).all()
        return tuple(HistoryTurn(r.question, r.rewritten or r.question, r.subject, r.answer,
                                 tuple(s.get("title") or "" for s in r.sources or ()))
                     for r in reversed(rows))

    async def append(self, key_id: str, conversation_id: str, turn: NewTurn) -> None:
        """Store a turn and drop what falls off the end; raises `UnknownConversationError` when the
        conversation went away while the question was answered."""
        now = utcnow()
        t = ConversationTurn
        async with write_transaction(self._engine) as conn:
            row = await self._owned(conn, key_id, conversation_id)
            await conn.execute(t.__table__.insert().values(
                conversation_id=conversation_id, request_id=turn.request_id, endpoint=turn.endpoint,
                question=turn.question, rewritten=turn.rewritten, subject=turn.subject, answer=turn.answer,
                sources=list(turn.sources), created_at=now))
            changes: dict[str, Any] = {"updated_at": now}
            if not row.title:
                changes["title"] = turn.question[:TITLE_CHARS]
            await conn.execute(update(Conversation).where(Conversation.id == conversation_id).values(**changes))
            kept = select(t.id).where(t.conversation_id == conversation_id).order_by(t.id.desc()).limit(self.max_turns)
            await conn.execute(delete(t).where(t.conversation_id == conversation_id, t.id.not_in(kept)))

    async def get(self, key_id: str, conversation_id: str) -> dict[str, Any]:
        """The conversation with its turns, oldest first, each with this key's feedback on it."""
        t, f = ConversationTurn, Feedback
        async with self._engine.connect() as conn:
            row = await self._owned(conn, key_id, conversation_id)
            turns = (await conn.execute(
                select(t, f.rating, f.helpful, f.relevant_chunk_ids, f.irrelevant_chunk_ids, f.comment)
                .outerjoin(f, (f.request_id == t.request_id) & (f.key_id == key_id))
                .where(t.conversation_id == conversation_id).order_by(t.id)
            )).all()
        out = _conversation(row, len(turns))
        out["items"] = [{
            "request_id": r.request_id, "endpoint": r.endpoint, "question": r.question, "rewritten": r.rewritten,
            "subject": r.subject, "answer": r.answer, "sources": r.sources,
            "created_at": r.created_at,
            "feedback": None if r.rating is None and r.helpful is None and r.relevant_chunk_ids is None
            and r.irrelevant_chunk_ids is None and r.comment is None else {
                "rating": r.rating, "helpful": r.helpful, "relevant_chunk_ids": r.relevant_chunk_ids,
                "irrelevant_chunk_ids": r.irrelevant_chunk_ids, "comment": r.comment},
        } for r in turns]
        return out

    async def recent(self, key_id: str, limit: int = 20) -> list[dict[str, Any]]:
        """The key's conversations, the most recently used first."""
        t = ConversationTurn
        counts = (select(t.conversation_id, func.count().label("n")).group_by(t.conversation_id).subquery())
        async with self._engine.connect() as conn:
            rows = (await conn.execute(
                select(Conversation, func.coalesce(counts.c.n, 0).label("n"))
                .outerjoin(counts, counts.c.conversation_id == Conversation.id)
                .where(Conversation.key_id == key_id)
                .order_by(Conversation.updated_at.desc(), Conversation.id).limit(limit)
            )).all()
        return [_conversation(r, int(r.n)) for r in rows]

    async def delete(self, key_id: str, conversation_id: str) -> None:
        async with write_transaction(self._engine) as conn:
            await self._owned(conn, key_id, conversation_id)
            # Turns first: the cascade is the database's, and a backend without it must not keep orphans.
            await conn.execute(delete(ConversationTurn).where(ConversationTurn.conversation_id == conversation_id))
            await conn.execute(delete(Conversation).where(Conversation.id == conversation_id))

    async def turn(self, key_id: str, request_id: str) -> str | None:
        """The endpoint (answer | search) of the key's turn with this request id, None when it has none."""
        t = ConversationTurn
        async with self._engine.connect() as conn:
            return (await conn.execute(
                select(t.endpoint).join(Conversation, Conversation.id == t.conversation_id)
                .where(t.request_id == request_id, Conversation.key_id == key_id).limit(1)
            )).scalar()
