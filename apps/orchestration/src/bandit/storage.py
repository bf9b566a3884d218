"""Engines for the learning components: lazy (users' scripts build them without one), and a blocking
read for synchronous callers such as the operators' one-line inspection scripts."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

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

    def read_blocking(self, read: Callable[[AsyncConnection], Awaitable[T]]) -> T | None:
        """Run `read` on a private connection when no event loop is running here; else None.

        Engines belong to the loop that opened their connections, so this never touches the shared one.
        """
        try:
            asyncio.get_running_loop()
            return None
        except RuntimeError:
            pass

        async def run() -> T:
            from apps.core.config import load_settings
            from apps.core.db import create_engine

            url = self.engine.url.render_as_string(hide_password=False)
            engine = create_engine(load_settings(database_url=url), pooled=False)
            try:
                async with engine.connect() as conn:
                    return await read(conn)
            finally:
                await engine.dispose()

        return asyncio.run(run())
