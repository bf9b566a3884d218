"""Per-key token buckets shared by every worker: in Redis when configured, else in the database.

Each check is one atomic operation (a Lua script, or one upsert statement), so concurrent workers
never double-spend a token. A denied request does not consume one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine


@dataclass(frozen=True)
class LimitDecision:
    allowed: bool
    remaining: float
    retry_after_s: int


def _decision(allowed: bool, tokens: float, per_minute: int) -> LimitDecision:
    rate = per_minute / 60.0
    return LimitDecision(allowed, tokens, 0 if allowed else max(1, math.ceil((1 - tokens) / rate)))


class RateLimiter(Protocol):
    async def hit(self, key: str, per_minute: int) -> LimitDecision: ...


# Parameters are cast explicitly: PostgreSQL infers a parameter's type from its context and asyncpg
# would silently truncate a float bound where an integer was inferred.
# The clock is the database's, not the caller's, so hosts with skewed clocks share one bucket correctly
# (as the Redis limiter uses Redis's TIME); a clock that steps back refills nothing rather than
# draining the bucket (the Redis script clamps the same way).
_NOW = {"postgresql": "CAST(EXTRACT(EPOCH FROM statement_timestamp()) AS float)",
        "sqlite": "((julianday('now') - 2440587.5) * 86400.0)"}
_REFILL = ("{least}(CAST(:cap AS float), rate_limit_buckets.tokens"
           " + {greatest}(0.0, {now} - rate_limit_buckets.updated_at) * CAST(:rate AS float))")
_UPSERT = """
INSERT INTO rate_limit_buckets (key_id, tokens, updated_at, allowed)
VALUES (:key, CAST(:cap AS float) - 1, {now}, 1)
ON CONFLICT (key_id) DO UPDATE SET
    tokens = CASE WHEN {refill} >= 1 THEN {refill} - 1 ELSE {refill} END,
    allowed = CASE WHEN {refill} >= 1 THEN 1 ELSE 0 END,
    updated_at = {now}
RETURNING tokens, allowed
"""


class DatabaseRateLimiter:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        postgres = engine.dialect.name == "postgresql"
        now = _NOW["postgresql" if postgres else "sqlite"]
        refill = _REFILL.format(least="least" if postgres else "min", greatest="greatest" if postgres else "max",
                                now=now)
        self._sql = text(_UPSERT.format(refill=refill, now=now))

    async def hit(self, key: str, per_minute: int) -> LimitDecision:
        async with self._engine.connect() as conn:
            conn = await conn.execution_options(dtrag_write=True)
            async with conn.begin():
                row = (
                    await conn.execute(self._sql, {"key": key, "cap": float(per_minute), "rate": per_minute / 60.0})
                ).one()
        return _decision(bool(row.allowed), float(row.tokens), per_minute)


_LUA = """
local cap = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1]) or cap
local ts = tonumber(state[2]) or now
tokens = math.min(cap, tokens + math.max(0, now - ts) * rate)
local allowed = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('EXPIRE', KEYS[1], math.ceil(cap / rate) + 60)
return {allowed, tostring(tokens)}
"""


class RedisRateLimiter:
    def __init__(self, redis) -> None:  # redis.asyncio.Redis
        self._redis = redis
        self._script = redis.register_script(_LUA)

    async def hit(self, key: str, per_minute: int) -> LimitDecision:
        # The Redis server's clock, not ours, so hosts with skewed clocks share one bucket correctly.
        seconds, micros = await self._redis.time()
        allowed, tokens = await self._script(
            keys=[f"dtrag:ratelimit:{key}"], args=[per_minute, per_minute / 60.0, seconds + micros / 1e6]
        )
        return _decision(bool(int(allowed)), float(tokens), per_minute)
