"""Async engine and sessions for both backends.

SQLite runs on `apps.core.sqlite_driver` (sqlite-vec loaded) in WAL mode with foreign keys on, a busy
timeout, and `BEGIN IMMEDIATE` for write transactions (a deferred transaction that later upgrades to a
writer can fail at once under concurrency instead of waiting).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from apps.core.config import Settings
from apps.core.sqlite_driver import async_dbapi

_WRITE_OPTION = "dtrag_write"
T = TypeVar("T")


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

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        immediate = conn.get_execution_options().get(_WRITE_OPTION, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def create_engine(settings: Settings, pooled: bool = True) -> AsyncEngine:
    """`pooled=False` opens a connection per use: for short-lived loops (see bandit.storage)."""
    return engine_for_url(settings.database_url, pooled=pooled, pool_size=settings.db_pool_size,
                          max_overflow=settings.db_max_overflow)


def engine_for_url(database_url: str, *, pooled: bool = True, pool_size: int = 5, max_overflow: int = 10) -> AsyncEngine:
    url = make_url(database_url)
    pool: dict[str, Any] = {} if pooled else {"poolclass": NullPool}
    if url.get_backend_name() == "sqlite":
        engine = create_async_engine(url, module=async_dbapi(), connect_args={"timeout": 30}, **pool)
        _configure_sqlite(engine)
        return engine
    if pooled:
        pool = {"pool_size": pool_size, "max_overflow": max_overflow, "pool_pre_ping": True}
    return create_async_engine(url, **pool)


@asynccontextmanager
async def write_transaction(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A connection in a transaction that holds the write lock from its first statement on SQLite."""
    async with engine.connect() as conn:
        conn = await conn.execution_options(**{_WRITE_OPTION: True})
        async with conn.begin():
            yield conn



def writing(engine: AsyncEngine) -> AsyncEngine:
    """The engine whose every transaction holds the write lock from its first statement on SQLite, for code
    that opens its own sessions (a library's store): a read-then-write transaction of a deferred BEGIN
    cannot wait for a concurrent writer and fails at once with "database is locked"."""
    return engine.execution_options(**{_WRITE_OPTION: True})


async def ping(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        await conn.execute(text("SELECT 1"))


async def schema_revision(engine: AsyncEngine) -> str | None:
    """The Alembic revision the database is at (None before the first migration)."""
    async with engine.connect() as conn:
        return (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalar()


def run_blocking(database_url: str, work: Callable[[AsyncEngine], Awaitable[T]]) -> T:
    """Run `work` to completion on a private engine and wait for it, from synchronous code.

    Engines belong to the loop that opened their connections, so this never touches a shared one.
    Called where an event loop is already running (a notebook, a sync helper inside async code), it
    runs on a thread of its own and blocks that loop meanwhile: for scripts and runbook checks, never
    for serving paths, which await instead.
    """
    async def run() -> T:
        engine = engine_for_url(database_url, pooled=False)
        try:
            return await work(engine)
        finally:
            await engine.dispose()

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(run())
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="blocking-db") as pool:
        return pool.submit(asyncio.run, run()).result()
