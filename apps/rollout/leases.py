"""Leader election by a lease row: one holder at a time across workers and hosts, taken over on expiry."""

from __future__ import annotations

import time

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from apps.core.db import write_transaction
from apps.core.models import Lease

_ACQUIRE = text("""
INSERT INTO leases (name, holder, expires_at) VALUES (:name, :holder, :expires)
ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
WHERE leases.holder = excluded.holder OR leases.expires_at < :now
""")


async def acquire(engine: AsyncEngine, name: str, holder: str, ttl_s: float) -> bool:
    """Take or renew the lease; True when `holder` holds it afterwards."""
    now = time.time()
    async with write_transaction(engine) as conn:
        await conn.execute(_ACQUIRE, {"name": name, "holder": holder, "expires": now + ttl_s, "now": now})
        current = (await conn.execute(select(Lease.holder).where(Lease.name == name))).scalar_one()
    return current == holder


async def release(engine: AsyncEngine, name: str, holder: str) -> None:
    async with write_transaction(engine) as conn:
        await conn.execute(Lease.__table__.delete().where(Lease.name == name, Lease.holder == holder))


async def holder_of(engine: AsyncEngine, name: str) -> str | None:
    async with engine.connect() as conn:
        row = (await conn.execute(select(Lease.holder, Lease.expires_at).where(Lease.name == name))).first()
    return row.holder if row is not None and row.expires_at >= time.time() else None
