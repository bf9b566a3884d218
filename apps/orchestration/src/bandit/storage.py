"""Engines for the learning components: lazy (users' scripts build them without one), and blocking
calls for synchronous callers such as the operators' one-line inspection scripts."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from apps.core.db import run_blocking

T = TypeVar("T")


class EngineHolder:
    def __init__(self, engine: AsyncEngine | None) -> None:
        self._engine = engine

    @property
    def engine(self) -> AsyncEngine:
        if self._engine is None:
            from apps.core.config import get_settings
            from apps.core.db import create_engine

            self._engine = create_engine(get_settings())
        return self._engine

    def run_blocking(self, work: Callable[[AsyncEngine], Awaitable[T]]) -> T:
        """`work` on a private engine to the same database, waited for (see `apps.core.db.run_blocking`)."""
        return run_blocking(self.engine.url.render_as_string(hide_password=False), work)

    def read_blocking(self, read: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        async def work(engine: AsyncEngine) -> T:
            async with engine.connect() as conn:
                return await read(conn)

        return self.run_blocking(work)
