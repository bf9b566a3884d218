"""Feedback rows: one per key and request, merged as the judgement changes (a thumb flipped, a passage
marked, a comment added). The answer's rating is also the bandit's reward (apps/api/routers/feedback.py);
the passages marked relevant and irrelevant are kept here for the case memory to come."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import and_, func, or_, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncEngine

from apps.core.db import write_transaction
from apps.core.models import Feedback, RequestEvent, utcnow

FIELDS = ("rating", "helpful", "relevant_chunk_ids", "irrelevant_chunk_ids", "comment")
ANSWER_ROUTES = ("/answer", "/api/v1/answer")


class FeedbackStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def record(self, key_id: str, request_id: str, endpoint: str | None, given: dict[str, Any]) -> dict[str, Any]:
        """Merge the fields given (the others keep what an earlier call stored); returns the row."""
        now = utcnow()
        given = {k: v for k, v in given.items() if k in FIELDS and v is not None}
        insert_ = pg_insert if self._engine.dialect.name == "postgresql" else sqlite_insert
        statement = insert_(Feedback).values(request_id=request_id, key_id=key_id, endpoint=endpoint, created_at=now,
                                             updated_at=now, **given)
        async with write_transaction(self._engine) as conn:
            await conn.execute(statement.on_conflict_do_update(
                index_elements=[Feedback.request_id, Feedback.key_id], set_={**given, "updated_at": now}))
            row = (await conn.execute(select(Feedback).where(
                Feedback.request_id == request_id, Feedback.key_id == key_id))).one()
        return {name: getattr(row, name) for name in ("request_id", "endpoint", *FIELDS)}

    async def summary(self, hours: float = 24.0) -> dict[str, Any]:
        """Feedback volume in the window, and the share of answers served in it that were rated."""
        since = utcnow() - timedelta(hours=hours)
        f = Feedback
        rated = or_(f.rating.is_not(None), f.helpful.is_not(None))
        count = func.count()
        async with self._engine.connect() as conn:
            row = (await conn.execute(select(
                count.label("rows"),
                func.count().filter(rated).label("rated"),
                func.count().filter(or_(f.relevant_chunk_ids.is_not(None), f.irrelevant_chunk_ids.is_not(None)))
                .label("passages"),
                func.count().filter(f.comment.is_not(None)).label("comments"),
                func.count().filter(and_(rated, f.endpoint == "answer")).label("answers_rated"),
            ).where(f.created_at >= since))).one()
            answers = (await conn.execute(select(func.count()).where(
                RequestEvent.ts >= since, RequestEvent.endpoint.in_(ANSWER_ROUTES), RequestEvent.status < 400,
                RequestEvent.method == "POST"))).scalar_one()
        return {"window_hours": hours, "rows": row.rows, "rated": row.rated, "passages_marked": row.passages,
                "comments": row.comments, "answers": answers, "answers_rated": row.answers_rated,
                "share_rated": round(min(row.answers_rated / answers, 1.0), 4) if answers else None}
