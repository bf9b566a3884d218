"""Composition root: builds the engine, store and services for one database, for CLI, API and tests."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine

from apps.core.config import Settings, get_settings
from apps.core.db import create_engine
from apps.ingestion.service import IngestionService
from apps.orchestration.src.bandit.decision_log import DecisionLog
from apps.orchestration.src.bandit.q_learning import SoftQLearning
from apps.orchestration.src.bandit.replay_buffer import ReplayBuffer
from apps.orchestration.src.bandit.service import StrategyBandit
from apps.rollout.flags import FlagService
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
    bandit: StrategyBandit
    flags: FlagService

    async def warm_up(self) -> None:
        """Load the Korean analyser and the query model now, not inside the first request's deadline."""
        self.search.analyzer.tokens("warm up 준비")
        await self.search.embedder.embed_query("warm up")

    def start(self) -> None:
        """Background work of a serving process: decision log, reward settling, flag refreshes."""
        self.bandit.start()
        self.flags.start()

    async def close(self) -> None:
        await self.flags.stop()
        await self.bandit.close()
        await self.store.close()
        await self.engine.dispose()


def build_runtime(settings: Settings | None = None) -> Runtime:
    settings = settings or get_settings()
    engine = create_engine(settings)
    store = create_store(engine, settings)
    embedder = get_embedder(settings)
    analyzer = get_analyzer()
    search = SearchService(store, embedder, analyzer, settings)
    bandit = StrategyBandit(search, SoftQLearning.from_settings(settings, engine),
                            ReplayBuffer(settings.replay_max_size, engine), DecisionLog(engine), settings)
    return Runtime(
        settings=settings,
        engine=engine,
        store=store,
        search=search,
        ingestion=IngestionService(store, embedder, analyzer, settings),
        bandit=bandit,
        flags=FlagService(engine, settings.flag_refresh_s),
    )
