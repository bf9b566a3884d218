"""The learning components' engine, and blocking calls for synchronous callers such as the operators'
one-line inspection scripts (the engine itself comes from the composition root)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from apps.core.db import run_blocking

T = TypeVar("T")


class EngineHolder:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    def run_blocking(self, work: Callable[[AsyncEngine], Awaitable[T]]) -> T:
        """`work` on a private engine to the same database, waited for (see `apps.core.db.run_blocking`)."""
        return run_blocking(self.engine.url.render_as_string(hide_password=False), work)

    def read_blocking(self, read: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        async def work(engine: AsyncEngine) -> T:
            async with engine.connect() as conn:
                return await read(conn)

        return self.run_blocking(work)
