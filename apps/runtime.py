"""The composition root: the one place that builds the engine, sessions, store, services and answer
pipelines for a database, and the only place that reads settings or makes engines. The API, the CLI,
the benches, the integrations, the RQ worker and the runbooks' door modules (`get_pipeline()`,
`get_q_learning()`, `ReplayBuffer()`, `get_env_manager()`) all start here; nothing below them imports
this module (`tests/unit/test_architecture.py`).

    async with build_runtime(settings) as rt:   # closes everything it built on the way out
        ...
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from apps.core.admin_actions import AdminActions
from apps.core.api_keys import ApiKeyStore
from apps.core.config import Settings, get_settings
from apps.core.db import create_engine
from apps.core.idempotency import IdempotencyStore
from apps.core.rate_limit import DatabaseRateLimiter, RateLimiter, RedisRateLimiter
from apps.core.request_log import RequestLog
from apps.core.retention import Retention
from apps.ingestion.collections import CollectionService
from apps.ingestion.errors import EmbeddingMismatchError
from apps.ingestion.parsing import DocumentParser
from apps.ingestion.service import IngestionService
from apps.jobs.service import JobService, build_jobs
from apps.llm.factory import ProviderFactory
from apps.orchestration.src.bandit.decision_log import DecisionLog
from apps.orchestration.src.bandit.soft_q import SoftQLearning
from apps.orchestration.src.bandit.replay import ReplayBuffer
from apps.orchestration.src.bandit.service import StrategyBandit
from apps.orchestration.src.conversations import ConversationStore, FeedbackStore
from apps.orchestration.src.pipelines import AnswerPipelines
from apps.rollout.canary import CanaryController
from apps.rollout.flags import FlagService
from apps.search.cache import LocalBackend, RedisBackend, SearchCache
from apps.search.cases.factory import build_case_leg, build_case_memory
from apps.search.cases.memory import CaseMemory
from apps.search.embeddings import get_embedder
from apps.search.rerank import build_reranker
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
    admin: AdminActions
    conversations: ConversationStore
    feedback: FeedbackStore
    collections: CollectionService
    cases: CaseMemory
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
        llm = await self.pipelines.provider_status()  # starts a local model server; asks a remote one
        if llm is not None and llm["state"] != "ok":
            # Serve anyway: answers fall back to the extractive composer until the model server answers.
            log.warning("the answer model server is not ready", extra={"error": llm.get("last_error")})

    def start(self) -> None:
        """Background work of a serving process: request and decision logs, reward settling, flag
        refreshes, canary ticks, retention."""
        self.request_log.start()
        self.bandit.start()
        self.flags.start()
        self.canary.start()
        self.retention.start()
        self.jobs.start()
        self.admin.start()
        self.cases.start()

    async def __aenter__(self) -> Runtime:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        self.admin.stop()
        await self.jobs.close()
        await self.retention.stop()
        await self.canary.stop()
        await self.request_log.stop()
        await self.flags.stop()
        await self.bandit.close()
        await self.cases.stop()
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
    analyzer = get_analyzer(settings.korean_analyzer, settings.analyzer_cache_bytes)
    backend = RedisBackend(redis) if redis is not None else LocalBackend(settings.search_cache_bytes)
    cache = SearchCache(engine, backend, settings.search_cache_ttl_s)
    case_leg = build_case_leg(engine, embedder, analyzer, settings)
    search = SearchService(store, embedder, analyzer, settings, cache=cache, reranker=build_reranker(settings),
                           cases=case_leg)

    async def clear_process_caches() -> dict[str, int]:
        """An admin cleanup on this process: its analyser cache, and its search cache unless Redis holds
        it; the bytes each held."""
        held = {"analyzer_cache_bytes": analyzer.cached_bytes}
        analyzer.clear()
        if isinstance(backend, LocalBackend):
            held["search_cache_bytes"] = backend.cached_bytes
            await backend.clear()
        return held

    bandit = StrategyBandit(search, SoftQLearning.from_settings(settings, engine),
                            ReplayBuffer(engine, settings.replay_max_size), DecisionLog(engine), settings)
    flags = FlagService(engine, settings.flag_refresh_s)
    request_log = RequestLog(engine)
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    ingestion = IngestionService(store, embedder, analyzer, settings)
    parser = DocumentParser(settings.parse_timeout_s)
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
        admin=AdminActions(engine, settings.cleanup_poll_s, clear_process_caches),
        conversations=ConversationStore(engine, settings.conversation_max_turns, settings.conversation_history_turns),
        feedback=FeedbackStore(engine),
        collections=CollectionService(engine),
        cases=build_case_memory(case_leg, search, settings),
        redis=redis,
    )


_process_runtime: Runtime | None = None


def get_runtime() -> Runtime:
    """The process-wide runtime on the configured settings, for scripts and the runbook doors."""
    global _process_runtime
    if _process_runtime is None:
        _process_runtime = build_runtime(get_settings())
    return _process_runtime
