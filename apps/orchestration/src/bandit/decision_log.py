"""The decision log: every served choice with its full probability vector; rewards join by request id.

Decisions are buffered in the process and written every `flush_interval_s` in one statement, so
choosing and logging cost the request microseconds; a decision the database refuses is logged and
dropped without holding back the others (see `BufferedWriter`). A lookup by request id flushes this
process's buffer first and waits out one flush interval for other workers' buffers before saying
"unknown".
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import and_, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from apps.core.flushed_log import FlushedLog
from apps.core.models import BanditDecision, utcnow


@dataclass
class Decision:
    request_id: str
    endpoint: str
    state: str
    action: str
    probabilities: dict[str, float]
    policy_version: int
    variant: str
    latency_ms: float = 0.0
    served_chunk_ids: list[int] = field(default_factory=list)
    replay: bool = True
    implicit_reward: float | None = None
    created_at: datetime = field(default_factory=utcnow)
    debated: bool = False  # the answer was settled by a debate: what it cost is part of the arm's price
    debate_llm_calls: int = 0
    debate_cost_usd: float = 0.0
    key_id: str | None = None  # whose request (SPEC-ACCESS-001): only that key's feedback rewards it
    collections: list[str] | None = None  # what it could see (["*"]: every collection)


def _describe(decision: Decision) -> dict[str, Any]:
    # The id is the client's X-Request-ID: the log shows enough of it to find the request, no more.
    return {"request_id": decision.request_id[:100], "request_id_length": len(decision.request_id),
            "endpoint": decision.endpoint}


class DecisionLog(FlushedLog[Decision]):
    def __init__(self, engine: AsyncEngine, flush_interval_s: float = 0.2) -> None:
        super().__init__("decision-log", engine, self._insert, _describe, interval_s=flush_interval_s)
        self._interval = flush_interval_s

    @property
    def engine(self) -> AsyncEngine:
        return self._engine

    def record(self, decision: Decision) -> None:
        self._writer.append(decision)

    async def _insert(self, conn: AsyncConnection, rows: list[Decision]) -> None:
        insert_ = pg_insert if self._engine.dialect.name == "postgresql" else sqlite_insert
        # A client may reuse an X-Request-ID: the first decision under an id stands.
        await conn.execute(insert_(BanditDecision).on_conflict_do_nothing(), [asdict(d) for d in rows])

    async def get(self, request_id: str, wait: bool = True) -> Any | None:
        await self.flush()
        for attempt in range(2):
            async with self._engine.connect() as conn:
                row = (await conn.execute(
                    select(BanditDecision).where(BanditDecision.request_id == request_id))).first()
            if row is not None or not wait or attempt:
                return row
            await asyncio.sleep(self._interval * 2)  # another worker may not have flushed yet
        return None

    async def recent(self, limit: int = 20) -> list[dict[str, Any]]:
        """The newest decisions, newest first: what was chosen, from which probabilities, and the
        reward once it joined (None while it waits for feedback or the implicit reward)."""
        await self.flush()
        d = BanditDecision
        async with self._engine.connect() as conn:
            rows = (await conn.execute(
                select(d.request_id, d.created_at, d.endpoint, d.state, d.action, d.probabilities, d.policy_version,
                       d.variant, d.latency_ms, d.reward, d.reward_source)
                .order_by(d.created_at.desc(), d.request_id.desc()).limit(limit)
            )).all()
        return [{**r._asdict(), "created_at": r.created_at.isoformat()} for r in rows]

    async def claim_explicit(self, conn: AsyncConnection, request_id: str, reward: float,
                             feedback: dict[str, Any]) -> bool:
        """Attach an explicit reward if none is attached yet; True when this call attached it."""
        result = await conn.execute(
            update(BanditDecision)
            .where(BanditDecision.request_id == request_id, BanditDecision.reward.is_(None))
            .values(reward=reward, reward_source="explicit", feedback=feedback, rewarded_at=utcnow())
        )
        return result.rowcount == 1

    async def claim_implicit(self, conn: AsyncConnection, older_than: datetime, limit: int = 1000,
                             ) -> list[Any]:
        """Decisions past the feedback window with no reward get their implicit one; returns them."""
        pending = (await conn.execute(
            select(BanditDecision.request_id).where(
                BanditDecision.reward.is_(None), BanditDecision.implicit_reward.is_not(None),
                BanditDecision.created_at < older_than,
            ).order_by(BanditDecision.created_at).limit(limit)
        )).scalars().all()
        if not pending:
            return []
        # The reward IS NULL re-check makes a concurrent claimer (another worker) skip these rows.
        return list((await conn.execute(
            update(BanditDecision)
            .where(BanditDecision.request_id.in_(pending), BanditDecision.reward.is_(None))
            .values(reward=BanditDecision.implicit_reward, reward_source="implicit", rewarded_at=utcnow())
            .returning(BanditDecision.request_id, BanditDecision.state, BanditDecision.action,
                       BanditDecision.probabilities, BanditDecision.reward, BanditDecision.replay)
        )).all())

    async def rewarded(self, since: datetime | None = None, endpoint: str | None = None,
                       page_size: int = 1000) -> AsyncIterator[Any]:
        """Rewarded decisions, oldest first: the logged data for off-policy evaluation.

        Read a page at a time, keyset on (created_at, request_id), so a long log never sits in
        memory at once and no connection stays open between pages."""
        await self.flush()
        d = BanditDecision
        query = select(d).where(d.reward.is_not(None))
        if since is not None:
            query = query.where(d.created_at >= since)
        if endpoint is not None:
            query = query.where(d.endpoint == endpoint)
        query = query.order_by(d.created_at, d.request_id).limit(page_size)
        page = query
        while True:
            async with self._engine.connect() as conn:
                rows = (await conn.execute(page)).all()
            for row in rows:
                yield row
            if len(rows) < page_size:
                return
            last = rows[-1]
            page = query.where(or_(d.created_at > last.created_at,
                                   and_(d.created_at == last.created_at, d.request_id > last.request_id)))
