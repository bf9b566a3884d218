"""Backend stores behind one interface (`Store`); `create_store` picks one from the engine's dialect."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from apps.core.config import Settings
from apps.search.stores.base import Store


def create_store(engine: AsyncEngine, settings: Settings) -> Store:
    if engine.dialect.name == "sqlite":
        from apps.search.stores.sqlite import SQLiteStore

        return SQLiteStore(engine)
    from apps.search.stores.postgres import PostgresStore

    return PostgresStore(engine, k1=settings.bm25_k1, b=settings.bm25_b, ef_search=settings.hnsw_ef_search,
                         exact_max_chunks=settings.dense_exact_max_chunks)


__all__ = ["Store", "create_store"]
