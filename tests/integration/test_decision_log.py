"""Buffered writers (the decision log, the request log): a row the database refuses is logged and
dropped without holding back the others; an unreachable database keeps rows for a bounded time and
number; the rewarded decisions are read page by page."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from apps.core.buffered_writer import BufferedWriter
from apps.core.config import load_settings
from apps.core.db import create_engine
from apps.core.models import BanditDecision, RequestEvent, utcnow
from apps.core.request_log import RequestLog
from apps.orchestration.src.bandit.decision_log import Decision, DecisionLog


@pytest.fixture
async def engine(database_url: str):
    engine = create_engine(load_settings(database_url=database_url))
    yield engine
    await engine.dispose()


def decision(request_id: str, **overrides: Any) -> Decision:
    fields: dict[str, Any] = {"request_id": request_id, "endpoint": "search", "state": "en|short", "action": "bm25",
                              "probabilities": {"bm25": 0.6, "dense": 0.4}, "policy_version": 1, "variant": "new"}
    return Decision(**{**fields, **overrides})


async def stored_ids(engine: AsyncEngine) -> set[str]:
    async with engine.connect() as conn:
        return set((await conn.execute(select(BanditDecision.request_id))).scalars())


async def test_a_refused_decision_does_not_stop_the_log(engine: AsyncEngine, caplog) -> None:
    log = DecisionLog(engine)
    long_id = "x" * 200  # over String(64): PostgreSQL refuses it, SQLite stores it
    for d in (decision("good-1"), decision(long_id), decision("good-2"), decision("no-state", state=None),
              decision("good-3")):
        log.record(d)
    with caplog.at_level(logging.ERROR):
        await log.flush()
    stored = await stored_ids(engine)
    assert {"good-1", "good-2", "good-3"} <= stored and "no-state" not in stored
    refused = [r for r in caplog.records if r.getMessage() == "row refused by the database: dropped"]
    assert {r.request_id for r in refused} >= {"no-state"} and all(r.reason for r in refused)
    if engine.dialect.name == "postgresql":
        assert long_id not in stored
        assert any(r.request_id == long_id[:100] and r.request_id_length == 200 for r in refused)
    # Nothing is retried: the next flush writes only what came since, and keeps working.
    log.record(decision("good-4"))
    caplog.clear()
    with caplog.at_level(logging.ERROR):
        await log.flush()
    assert "good-4" in await stored_ids(engine) and not caplog.records
    assert len(log._writer) == 0


async def test_a_refused_request_event_does_not_drop_the_batch(engine: AsyncEngine) -> None:
    requests = RequestLog(engine)
    requests.record("/api/v1/search", "POST", 200, 12.0)
    requests.record("/api/v1/search", "POST", None, 13.0)  # type: ignore[arg-type]  # NOT NULL
    requests.record("/api/v1/answer", "POST", 200, 14.0)
    await requests.flush()
    async with engine.connect() as conn:
        assert sorted((await conn.execute(select(RequestEvent.latency_ms))).scalars()) == [12.0, 14.0]


def unreachable_url(backend: str, tmp_path) -> str:
    if backend == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'no' / 'such' / 'dir.db'}"
    return "postgresql+asyncpg://nobody@127.0.0.1:1/none"


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_an_unreachable_database_keeps_rows_for_a_bounded_time_and_number(backend: str, tmp_path,
                                                                                 caplog) -> None:
    engine = create_engine(load_settings(database_url=unreachable_url(backend, tmp_path)))
    log = DecisionLog(engine)
    log._writer = BufferedWriter("decision-log", engine, log._insert, lambda d: {"request_id": d.request_id},
                                 max_rows=3, hold_s=0.3)
    for i in range(5):
        log.record(decision(f"d{i}"))
    assert len(log._writer) == 3  # the buffer is bounded
    with caplog.at_level(logging.WARNING):
        await log.flush()
        assert len(log._writer) == 3, "an outage is not a refused row: keep them"
        await asyncio.sleep(0.4)
        await log.flush()
    assert len(log._writer) == 0, "held past hold_s: dropped, not retried forever"
    messages = [r.getMessage() for r in caplog.records]
    assert "buffer full while the database was unreachable: rows dropped" in messages
    assert "database unreachable for too long: rows dropped" in messages
    assert "row refused by the database: dropped" not in messages
    await engine.dispose()


async def test_rows_kept_through_an_outage_are_written_when_it_ends(engine: AsyncEngine) -> None:
    calls = 0

    async def flaky(conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise OperationalError("INSERT", {}, ConnectionRefusedError("database restarting"))
        await conn.execute(RequestEvent.__table__.insert(), rows)

    writer: BufferedWriter[dict[str, Any]] = BufferedWriter("test", engine, flaky, lambda row: {})
    row = {"ts": utcnow(), "endpoint": "/x", "method": "GET", "status": 200, "latency_ms": 1.0}
    writer.append(row)
    await writer.flush()
    assert len(writer) == 1
    writer.append({**row, "latency_ms": 2.0})
    await writer.flush()
    assert len(writer) == 0 and calls == 2
    async with engine.connect() as conn:
        assert sorted((await conn.execute(select(RequestEvent.latency_ms))).scalars()) == [1.0, 2.0]


async def test_rewarded_decisions_are_read_page_by_page_oldest_first(engine: AsyncEngine) -> None:
    log = DecisionLog(engine)
    start = utcnow() - timedelta(hours=1)
    # Three share a timestamp: the keyset must not skip or repeat them at a page boundary.
    times = [start, start + timedelta(seconds=1), start + timedelta(seconds=1), start + timedelta(seconds=1),
             start + timedelta(seconds=2), start + timedelta(seconds=3), start + timedelta(seconds=4)]
    for i, at in enumerate(times):
        log.record(decision(f"r{i}", created_at=at))
    log.record(decision("unrewarded"))
    await log.flush()
    async with engine.begin() as conn:
        await conn.execute(update(BanditDecision).where(BanditDecision.request_id != "unrewarded")
                           .values(reward=0.5, reward_source="explicit"))
    read = [r.request_id async for r in log.rewarded(page_size=2)]
    assert read == [f"r{i}" for i in range(len(times))]
    assert [r.request_id async for r in log.rewarded(since=start + timedelta(seconds=2), page_size=2)] == \
        ["r4", "r5", "r6"]
    async with engine.connect() as conn:
        assert (await conn.execute(select(func.count()).select_from(BanditDecision))).scalar() == 8
