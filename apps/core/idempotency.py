"""Idempotency keys: a write request's first response, stored under (caller scope, key) with a hash of
the request, replayed for a retry with the same body and refused for a different one, for `ttl_s`
seconds. After that the key is free again (retries come within minutes; retention prunes old keys)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from apps.core.models import IdempotencyKey, utcnow


class IdempotencyConflictError(ValueError):
    """The key was already used with a different request."""


@dataclass(frozen=True)
class StoredResponse:
    status_code: int
    body: dict[str, Any]


class IdempotencyStore:
    def __init__(self, engine: AsyncEngine, ttl_s: float = 86400.0) -> None:
        self._engine = engine
        self._ttl = timedelta(seconds=ttl_s)

    def _expired_before(self) -> datetime:
        return utcnow() - self._ttl

    async def replay(self, scope: str, key: str, request_hash: str) -> StoredResponse | None:
        """The stored response for this key, None if it is new or expired; raises for the same key
        on another body."""
        async with self._engine.connect() as conn:
            row = (await conn.execute(
                select(IdempotencyKey.request_hash, IdempotencyKey.status_code, IdempotencyKey.response)
                .where(IdempotencyKey.scope == scope, IdempotencyKey.key == key,
                       IdempotencyKey.created_at >= self._expired_before())
            )).first()
        if row is None:
            return None
        if row.request_hash != request_hash:
            raise IdempotencyConflictError("Idempotency-Key was already used with a different request body")
        return StoredResponse(row.status_code, row.response)

    async def record(self, scope: str, key: str, request_hash: str, response: StoredResponse) -> None:
        """Store the response; an expired entry under the key is replaced, a live one stands (a
        concurrent retry recorded it first; the write it guarded is idempotent anyway)."""
        insert_ = pg_insert if self._engine.dialect.name == "postgresql" else sqlite_insert
        values = {"request_hash": request_hash, "status_code": response.status_code, "response": response.body,
                  "created_at": utcnow()}
        statement = insert_(IdempotencyKey).values(scope=scope, key=key, **values)
        async with self._engine.begin() as conn:
            await conn.execute(statement.on_conflict_do_update(
                index_elements=[IdempotencyKey.scope, IdempotencyKey.key], set_=values,
                where=IdempotencyKey.created_at < self._expired_before()))


    async def reserve(self, conn: AsyncConnection, scope: str, key: str, request_hash: str,
                      response: StoredResponse) -> bool:
        """Store the response under the key in the caller's transaction (with the job it accepts);
        False if a live entry holds the key. Of concurrent requests with one key exactly one inserts;
        the others' transactions, their job included, roll back and they replay the winner's response,
        so a duplicate never makes a second job and no window exists where the key is taken but its
        response unknown (Stripe's 409 case cannot arise)."""
        insert_ = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
        values = {"request_hash": request_hash, "status_code": response.status_code, "response": response.body,
                  "created_at": utcnow()}
        statement = insert_(IdempotencyKey).values(scope=scope, key=key, **values)
        result = await conn.execute(statement.on_conflict_do_update(
            index_elements=[IdempotencyKey.scope, IdempotencyKey.key], set_=values,
            where=IdempotencyKey.created_at < self._expired_before()))
        return bool(result.rowcount)
