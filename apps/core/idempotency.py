"""Idempotency keys: a write request's first response, stored under (caller scope, key) with a hash of
the request, replayed for a retry with the same body and refused for a different one."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from apps.core.models import IdempotencyKey, utcnow


class IdempotencyConflictError(ValueError):
    """The key was already used with a different request."""


@dataclass(frozen=True)
class StoredResponse:
    status_code: int
    body: dict[str, Any]


class IdempotencyStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def replay(self, scope: str, key: str, request_hash: str) -> StoredResponse | None:
        """The stored response for this key, None if it is new; raises for the same key on another body."""
        async with self._engine.connect() as conn:
            row = (await conn.execute(
                select(IdempotencyKey.request_hash, IdempotencyKey.status_code, IdempotencyKey.response)
                .where(IdempotencyKey.scope == scope, IdempotencyKey.key == key)
            )).first()
        if row is None:
            return None
        if row.request_hash != request_hash:
            raise IdempotencyConflictError("Idempotency-Key was already used with a different request body")
        return StoredResponse(row.status_code, row.response)

    async def record(self, scope: str, key: str, request_hash: str, response: StoredResponse) -> None:
        try:
            async with self._engine.begin() as conn:
                await conn.execute(insert(IdempotencyKey).values(
                    scope=scope, key=key, request_hash=request_hash, status_code=response.status_code,
                    response=response.body, created_at=utcnow(),
                ))
        except IntegrityError:
            pass  # a concurrent retry recorded it first; the write it guarded is idempotent anyway
