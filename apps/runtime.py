"""The composition root: the one place that builds the engine, sessions, store, services and answer
pipelines for a database. The API, the CLI and the benches all start here; nothing below them imports
this module (the runbook doors `get_pipeline()` and `get_q_learning()` find it through the
`dtrag.runtime` entry point, see `apps.core.composition`)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from apps.core.api_keys import ApiKeyStore
from apps.core.config import Settings, get_settings
from apps.core.db import create_engine
from apps.core.idempotency import IdempotencyStore
from apps.core.rate_limit import DatabaseRateLimiter, RateLimiter, RedisRateLimiter
from apps.core.request_log import RequestLog
from apps.core.retention import Retention
from apps.ingestion.errors import EmbeddingMismatchError
from apps.ingestion.parsing import DocumentParser
from apps.ingestion.service import IngestionService
from apps.jobs.service import JobService, build_jobs
from apps.llm.factory import ProviderFactory
from apps.orchestration.src.bandit.decision_log import DecisionLog
from apps.orchestration.src.bandit.q_learning import SoftQLearning
from apps.orchestration.src.bandit.replay_buffer import ReplayBuffer
from apps.orchestration.src.bandit.service import StrategyBandit
from apps.orchestration.src.pipelines import AnswerPipelines
from apps.rollout.canary import CanaryController
from apps.rollout.flags import FlagService
from apps.search.cache import LocalBackend, RedisBackend, SearchCache
from apps.search.embeddings import get_embedder
from apps.search.service import SearchService
from apps.search.stores import Store, create_store
from apps.text.analyzer import get_analyzer

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    store: Store
    search: SearchService
    ingestion: IngestionService
    parser: DocumentParser
    bandit: StrategyBandit
    flags: FlagService
    pipelines: AnswerPipelines
    keys: ApiKeyStore
    limiter: RateLimiter
    idempotency: IdempotencyStore
    request_log: RequestLog
    canary: CanaryController
    retention: Retention
    jobs: JobService
    redis: Any | None = None  # redis.asyncio.Redis when REDIS_URL is set

    async def warm_up(self) -> None:
        """Load the Korean analyser and the query model now, not inside the first request's deadline."""
        self.search.analyzer.tokens("warm up 준비")
        await self.search.embedder.embed_query("warm up")
        try:
            await self.ingestion.check_compatible()
        except EmbeddingMismatchError as exc:
            # Serve anyway (what still matches answers) and say loudly what `dtrag reindex` would fix.
            log.error("the corpus was indexed with another model or analyser", extra={"error": str(exc)})
        except (OSError, SQLAlchemyError) as exc:  # the database may come up after the server; /health says so
            log.warning("could not compare the corpus with the configured model", extra={"error": type(exc).__name__})

    def start(self) -> None:
        """Background work of a serving process: request and decision logs, reward settling, flag
        refreshes, canary ticks, retention."""
        self.request_log.start()
        self.bandit.start()
        self.flags.start()
        self.canary.start()
        self.retention.start()
        self.jobs.start()

    async def close(self) -> None:
        await self.jobs.close()
        await self.retention.stop()
        await self.canary.stop()
        await self.request_log.stop()
        await self.flags.stop()
        await self.bandit.close()
        if self.redis is not None:
            await self.redis.aclose()
        self.parser.close()
        await self.store.close()
        await self.engine.dispose()


def _redis(settings: Settings) -> Any | None:
    if not settings.redis_url:
        return None
    import redis.asyncio as aioredis

    return aioredis.from_url(settings.redis_url, socket_timeout=2, socket_connect_timeout=2)


def build_runtime(settings: Settings | None = None) -> Runtime:
    """Builds without connecting: the first query opens the database, `warm_up()` loads the models."""
    settings = settings or get_settings()
    engine = create_engine(settings)
    store = create_store(engine, settings)
    redis = _redis(settings)
    embedder = get_embedder(settings)
    analyzer = get_analyzer(settings.korean_analyzer)
    cache = SearchCache(engine, RedisBackend(redis) if redis is not None else LocalBackend(),
                        settings.search_cache_ttl_s)
    search = SearchService(store, embedder, analyzer, settings, cache=cache)
    bandit = StrategyBandit(search, SoftQLearning.from_settings(settings, engine),
                            ReplayBuffer(settings.replay_max_size, engine, capacity=settings.replay_max_size), DecisionLog(engine), settings)
    flags = FlagService(engine, settings.flag_refresh_s)
    request_log = RequestLog(engine)
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    ingestion = IngestionService(store, embedder, analyzer, settings)
    parser = DocumentParser()
    idempotency = IdempotencyStore(engine, settings.idempotency_ttl_s)
    return Runtime(
        settings=settings,
        engine=engine,
        sessions=sessions,
        store=store,
        search=search,
        ingestion=ingestion,
        parser=parser,
        bandit=bandit,
        flags=flags,
        pipelines=AnswerPipelines(bandit, ProviderFactory(settings, analyzer), analyzer, settings, flags),
        keys=ApiKeyStore(engine, settings.secret_key),
        limiter=RedisRateLimiter(redis) if redis is not None else DatabaseRateLimiter(engine),
        idempotency=idempotency,
        request_log=request_log,
        canary=CanaryController(engine, flags, request_log, settings),
        retention=Retention(engine, settings),
        jobs=build_jobs(engine, ingestion, parser, bandit, flags, idempotency, settings),
        redis=redis,
    )


_process_runtime: Runtime | None = None


def get_runtime() -> Runtime:
    """The process-wide runtime on the configured settings, for scripts and the runbook doors."""
    global _process_runtime
    if _process_runtime is None:
        _process_runtime = build_runtime(get_settings())
    return _process_runtime
