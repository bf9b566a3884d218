"""Async engine and sessions for both backends.

SQLite runs in WAL mode with foreign keys on, a busy timeout, and `BEGIN IMMEDIATE` for write
transactions (a deferred transaction that later upgrades to a writer can fail at once under
concurrency instead of waiting). It also gets `dt_cosine(a, b)`, the SQL function the SQLite store's
exact dense search runs on: the stock Python `sqlite3` here cannot load extensions such as sqlite-vec.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import numpy as np
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from apps.core.config import Settings, get_settings

_WRITE_OPTION = "dtrag_write"


_query_vector = threading.local()  # each aiosqlite connection runs on its own thread


def _cosine(a: bytes | None, b: bytes | None) -> float | None:
    if a is None or b is None:
        return None
    # The query vector is the same bytes object for every row of a statement: parse it once.
    if getattr(_query_vector, "raw", None) is not b:
        _query_vector.raw, _query_vector.array = b, np.frombuffer(b, dtype=np.float32)
    # Vectors are stored L2-normalised, so the dot product is the cosine similarity.
    return float(np.frombuffer(a, dtype=np.float32).dot(_query_vector.array))


def _configure_sqlite(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves, see _on_begin
        cur = dbapi_connection.cursor()
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()
        dbapi_connection.create_function("dt_cosine", 2, _cosine, deterministic=True)

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        immediate = conn.get_execution_options().get(_WRITE_OPTION, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def create_engine(settings: Settings | None = None) -> AsyncEngine:
    settings = settings or get_settings()
    url = make_url(settings.database_url)
    if settings.is_sqlite:
        engine = create_async_engine(url, connect_args={"timeout": 30})
        _configure_sqlite(engine)
        return engine
    return create_async_engine(
        url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_pre_ping=True,
    )


@asynccontextmanager
async def write_transaction(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A connection in a transaction that holds the write lock from its first statement on SQLite."""
    async with engine.connect() as conn:
        conn = await conn.execution_options(**{_WRITE_OPTION: True})
        async with conn.begin():
            yield conn

