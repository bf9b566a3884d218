"""Retention: request events, bandit decisions, idempotency keys, canary evaluations and the tool-call
audit are pruned by age in bounded batches; an expired idempotency key is neither replayed nor in the way."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import event as sa_event
from sqlalchemy import func, insert, select

from apps.core.config import load_settings
from apps.core.db import create_engine
from apps.core.idempotency import IdempotencyConflictError, IdempotencyStore, StoredResponse
from apps.core.models import BanditDecision, CanaryEvaluation, IdempotencyKey, RequestEvent, ToolCall, utcnow
from apps.core.retention import Retention

DAY = timedelta(days=1)


@pytest.fixture
async def engine(database_url: str):
    engine = create_engine(load_settings(database_url=database_url))
    yield engine
    await engine.dispose()


def event(age: timedelta) -> dict[str, Any]:
    return {"ts": utcnow() - age, "endpoint": "/api/v1/search", "method": "POST", "status": 200, "latency_ms": 1.0}


def decision(request_id: str, age: timedelta, reward: float | None = None) -> dict[str, Any]:
    return {"request_id": request_id, "created_at": utcnow() - age, "endpoint": "search", "state": "s",
            "action": "bm25", "probabilities": {"bm25": 1.0}, "policy_version": 1, "variant": "new",
            "latency_ms": 1.0, "served_chunk_ids": [], "replay": True, "reward": reward}


def key(name: str, age: timedelta) -> dict[str, Any]:
    return {"scope": "k1", "key": name, "request_hash": "h", "status_code": 201, "response": {"id": name},
            "created_at": utcnow() - age}


def evaluation(flag: str, age: timedelta) -> dict[str, Any]:
    return {"flag": flag, "at": utcnow() - age, "verdict": "pass", "action": "none", "consecutive_failures": 0,
            "detail": {}}


def tool_call(tool: str, age: timedelta) -> dict[str, Any]:
    return {"at": utcnow() - age, "request_id": "r1", "direction": "in", "key_id": "k1", "tool": tool,
            "decision": "allowed", "reason": "allowlisted", "arguments": {"query": "q"}, "outcome": "ok",
            "latency_ms": 1.0}


async def count(engine, model) -> int:
    async with engine.connect() as conn:
        return (await conn.execute(select(func.count()).select_from(model))).scalar_one()


async def test_prune_deletes_only_what_is_past_retention_in_batches(engine, database_url: str) -> None:
    async with engine.begin() as conn:
        await conn.execute(insert(RequestEvent), [event(8 * DAY) for _ in range(12)] + [event(6 * DAY)] * 2)
        await conn.execute(insert(BanditDecision), [
            decision("old-rewarded", 31 * DAY, reward=1.0), decision("old-unsettled", 31 * DAY),
            decision("recent", 29 * DAY), decision("fresh", timedelta(minutes=1))])
        await conn.execute(insert(IdempotencyKey), [key("expired", timedelta(hours=25)),
                                                    key("live", timedelta(hours=23))])
        await conn.execute(insert(CanaryEvaluation), [
            evaluation("new_pipeline", 40 * DAY), evaluation("new_pipeline", 35 * DAY),
            evaluation("new_pipeline", timedelta(minutes=1)),
            evaluation("old_flag", 50 * DAY), evaluation("old_flag", 45 * DAY)])  # the newest of a flag stays
        await conn.execute(insert(ToolCall), [tool_call("old", 31 * DAY), tool_call("recent", 29 * DAY)])
    deletes: list[str] = []
    sa_event.listen(engine.sync_engine, "before_cursor_execute",
                    lambda _c, _cur, sql, *_: sql.startswith("DELETE FROM request_events") and deletes.append(sql))
    retention = Retention(engine, load_settings(database_url=database_url), batch_size=5, pause_s=0)
    assert await retention.prune_once() == {"request_events": 12, "bandit_decisions": 2, "idempotency_keys": 1,
                                            "canary_evaluations": 3, "job_payloads": 0, "jobs": 0, "job_events": 0,
                                            "conversation_turns": 0, "conversations": 0, "feedback": 0,
                                            "tool_calls": 1}
    assert await count(engine, RequestEvent) == 2
    assert len(deletes) == 3  # 5 + 5 + 2: no statement deletes more than a batch
    async with engine.connect() as conn:
        assert set((await conn.execute(select(BanditDecision.request_id))).scalars()) == {"recent", "fresh"}
        assert list((await conn.execute(select(IdempotencyKey.key))).scalars()) == ["live"]
        kept = (await conn.execute(select(CanaryEvaluation.flag).order_by(CanaryEvaluation.id))).scalars().all()
        assert list((await conn.execute(select(ToolCall.tool))).scalars()) == ["recent"]
    assert kept == ["new_pipeline", "old_flag"]
    assert await retention.prune_once() == dict.fromkeys(
        ("request_events", "bandit_decisions", "idempotency_keys", "canary_evaluations", "job_payloads", "jobs",
         "job_events", "conversation_turns", "conversations", "feedback", "tool_calls"), 0)
    # jobs: tests/integration/test_jobs.py; conversations and feedback: tests/integration/test_conversations.py


async def test_the_periodic_prune_runs_and_stops(engine, database_url: str) -> None:
    async with engine.begin() as conn:
        await conn.execute(insert(RequestEvent), [event(8 * DAY)])
    retention = Retention(engine, load_settings(database_url=database_url, retention_interval_s=0.05))
    retention.start()
    for _ in range(100):
        if await count(engine, RequestEvent) == 0:
            break
        await asyncio.sleep(0.05)
    await retention.stop()
    assert await count(engine, RequestEvent) == 0


async def test_an_expired_idempotency_key_is_not_replayed_and_is_replaced(engine) -> None:
    store = IdempotencyStore(engine, ttl_s=3600)
    async with engine.begin() as conn:
        await conn.execute(insert(IdempotencyKey), [key("old", timedelta(hours=2)), key("new", timedelta(minutes=5))])
    assert await store.replay("k1", "new", "h") == StoredResponse(201, {"id": "new"})
    with pytest.raises(IdempotencyConflictError):
        await store.replay("k1", "new", "another body")
    # Expired: a retry with any body runs again, and its response replaces the old one.
    assert await store.replay("k1", "old", "other") is None
    await store.record("k1", "old", "other", StoredResponse(201, {"id": "second"}))
    assert await store.replay("k1", "old", "other") == StoredResponse(201, {"id": "second"})
    # A live key is never overwritten (a concurrent retry recorded it first).
    await store.record("k1", "new", "h", StoredResponse(500, {"id": "late"}))
    assert await store.replay("k1", "new", "h") == StoredResponse(201, {"id": "new"})
