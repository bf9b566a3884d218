"""Composition root: builds the engine, store and services for one database, for CLI, API and tests."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine

from apps.core.config import Settings, get_settings
from apps.core.db import create_engine
from apps.ingestion.service import IngestionService
from apps.search.embeddings import get_embedder
from apps.search.service import SearchService
from apps.search.stores import Store, create_store
from apps.search.text.analyzer import get_analyzer


@dataclass
class Runtime:
    settings: Settings
    engine: AsyncEngine
    store: Store
    search: SearchService
    ingestion: IngestionService

    async def warm_up(self) -> None:
        """Load the Korean analyser and the query model now, not inside the first request's deadline."""
        self.search.analyzer.tokens("warm up 준비")
        await self.search.embedder.embed_query("warm up")

    async def close(self) -> None:
        await self.store.close()
        await self.engine.dispose()


def build_runtime(settings: Settings | None = None) -> Runtime:
    settings = settings or get_settings()
    engine = create_engine(settings)
    store = create_store(engine, settings)
    embedder = get_embedder(settings)
    analyzer = get_analyzer()
    return Runtime(
        settings=settings,
        engine=engine,
        store=store,
        search=SearchService(store, embedder, analyzer, settings),
        ingestion=IngestionService(store, embedder, analyzer, settings),
    )
