"""Experience replay: a bounded FIFO of (state, action, reward) in the database, shared by all workers.

Ids only grow, so "keep the newest `capacity`" is one DELETE below `newest id - capacity` after each
insert; sampling is uniform over what is kept. The table's capacity is the configured
`REPLAY_MAX_SIZE`, whoever builds the buffer: a `ReplayBuffer(max_size=10)` in a script is a window on
the newest 10 experiences and never trims the shared table to 10 rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, insert, select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from apps.core.db import write_transaction
from apps.core.models import ReplayExperience
from apps.orchestration.src.bandit.storage import EngineHolder


@dataclass(frozen=True)
class Experience:
    state: str
    action: str
    reward: float
    propensity: float = 1.0
    request_id: str = ""
    id: int | None = None


class ReplayBuffer(EngineHolder):
    def __init__(self, engine: AsyncEngine, capacity: int, *, max_size: int | None = None) -> None:
        super().__init__(engine)
        self.capacity = capacity  # the shared table's bound
        self.max_size = max_size or capacity  # what this buffer reads: the newest max_size experiences
        if self.max_size < 1 or self.capacity < 1:
            raise ValueError("max_size and capacity must be at least 1")
        self._size = 0  # last size this process saw; `await size()` asks the database

    def __len__(self) -> int:
        """The database's count, read synchronously (for scripts; async code awaits `size()`)."""
        self._size = self.read_blocking(self._count)
        return self._size

    async def _count(self, conn: AsyncConnection) -> int:
        total = int((await conn.execute(select(func.count()).select_from(ReplayExperience))).scalar_one())
        return min(total, self.max_size)

    async def add(self, state: str, action: str, reward: float, next_state: str | None = None, *,
                  propensity: float = 1.0, request_id: str = "", conn: AsyncConnection | None = None) -> int:
        """Append one experience (inside `conn`'s transaction when given) and evict the oldest beyond
        the capacity. `next_state` is accepted for the original API; a request is one step (γ = 0)."""
        if conn is None:
            async with write_transaction(self.engine) as own:
                return await self.add(state, action, reward, propensity=propensity, request_id=request_id, conn=own)
        new_id = (await conn.execute(
            insert(ReplayExperience).values(request_id=request_id, state=state, action=action, reward=float(reward),
                                            propensity=float(propensity)).returning(ReplayExperience.id)
        )).scalar_one()
        await conn.execute(delete(ReplayExperience).where(ReplayExperience.id <= new_id - self.capacity))
        self._size = min(self._size + 1, self.max_size)
        return int(new_id)

    async def sample(self, batch_size: int) -> list[Experience]:
        """Up to batch_size of the newest max_size experiences, drawn uniformly without replacement."""
        async with self.engine.connect() as conn:
            query = select(ReplayExperience)
            if self.max_size < self.capacity:
                newest = (await conn.execute(select(func.max(ReplayExperience.id)))).scalar_one_or_none() or 0
                query = query.where(ReplayExperience.id > newest - self.max_size)
            rows = (await conn.execute(query.order_by(func.random()).limit(batch_size))).all()
        return [Experience(r.state, r.action, r.reward, r.propensity, r.request_id, r.id) for r in rows]

    async def size(self) -> int:
        async with self.engine.connect() as conn:
            self._size = await self._count(conn)
        return self._size

    async def stats(self) -> dict[str, Any]:
        async with self.engine.connect() as conn:
            total = (await conn.execute(select(
                func.count(), func.min(ReplayExperience.created_at), func.max(ReplayExperience.created_at),
                func.max(ReplayExperience.id),
            ))).one()
            by_action = (await conn.execute(
                select(ReplayExperience.action, func.count(), func.avg(ReplayExperience.reward))
                .group_by(ReplayExperience.action).order_by(ReplayExperience.action)
            )).all()
            storage = await _table_bytes(conn, "replay_experiences")
        self._size = min(int(total[0]), self.max_size)
        return {
            "size": self._size,
            "max_size": self.max_size,
            "capacity": self.capacity,
            "oldest": total[1].isoformat() if total[1] else None,
            "newest": total[2].isoformat() if total[2] else None,
            "total_added": int(total[3] or 0),
            "by_action": {a: {"count": int(n), "mean_reward": round(float(m), 4)} for a, n, m in by_action},
            "storage_bytes": storage,
        }


async def _table_bytes(conn: AsyncConnection, table: str) -> int | None:
    """On-disk size of a table with its indexes (None where the backend cannot say)."""
    if conn.dialect.name == "postgresql":
        return int((await conn.execute(text(f"SELECT pg_total_relation_size('{table}')"))).scalar_one())
    try:
        return int((await conn.execute(
            text("SELECT sum(pgsize) FROM dbstat WHERE name = :t OR name LIKE :idx"),
            {"t": table, "idx": f"sqlite_autoindex_{table}%"},
        )).scalar_one() or 0)
    except Exception:  # SQLite built without the dbstat table
        return None
