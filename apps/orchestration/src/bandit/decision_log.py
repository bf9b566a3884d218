"""The decision log: every served choice with its full probability vector; rewards join by request id.

Decisions are buffered in the process and written every `flush_interval_s` in one transaction, so
choosing and logging cost the request microseconds. A lookup by request id flushes this process's
buffer first and waits out one flush interval for other workers' buffers before saying "unknown".
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from apps.core.db import write_transaction
from apps.core.models import BanditDecision, utcnow
from apps.core.periodic import Periodic

log = logging.getLogger(__name__)

_MAX_BUFFER = 50_000  # while the database is unreachable, keep at most this many decisions


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


class DecisionLog:
    def __init__(self, engine: AsyncEngine, flush_interval_s: float = 0.2) -> None:
        self._engine = engine
        self._interval = flush_interval_s
        self._buffer: list[Decision] = []
        self._flusher = Periodic("decision-log-flush", flush_interval_s, self.flush)
        self._lock = asyncio.Lock()

    @property
    def engine(self) -> AsyncEngine:
        return self._engine

    def record(self, decision: Decision) -> None:
        self._buffer.append(decision)

    async def flush(self) -> None:
        async with self._lock:
            if not self._buffer:
                return
            rows, self._buffer = self._buffer, []
            insert_ = pg_insert if self._engine.dialect.name == "postgresql" else sqlite_insert
            try:
                async with write_transaction(self._engine) as conn:
                    # A client may reuse an X-Request-ID: the first decision under an id stands.
                    await conn.execute(insert_(BanditDecision).on_conflict_do_nothing(), [asdict(d) for d in rows])
            except Exception as exc:  # keep them for the next flush rather than lose the log
                log.warning("decision log write failed, retrying next flush: %s", type(exc).__name__)
                self._buffer[:0] = rows[-_MAX_BUFFER:]

    def start(self) -> None:
        self._flusher.start()

    async def stop(self) -> None:
        self._flusher.stop()
        await self.flush()

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

    async def rewarded(self, since: datetime | None = None, endpoint: str | None = None) -> list[Any]:
        """Rewarded decisions, oldest first: the logged data for off-policy evaluation."""
        await self.flush()
        query = select(BanditDecision).where(BanditDecision.reward.is_not(None))
        if since is not None:
            query = query.where(BanditDecision.created_at >= since)
        if endpoint is not None:
            query = query.where(BanditDecision.endpoint == endpoint)
        async with self._engine.connect() as conn:
            return list((await conn.execute(query.order_by(BanditDecision.created_at))).all())
