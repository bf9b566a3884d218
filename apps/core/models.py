"""SQLAlchemy models shared by both backends.

Backend-specific lexical structures are not ORM models: SQLite keeps an FTS5 table in sync with
`chunks` through triggers, PostgreSQL keeps a `chunk_terms` postings table; both are created by the
Alembic history and owned by the matching store.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from pgvector.sqlalchemy import VECTOR
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# SQLite only auto-increments a column declared exactly INTEGER PRIMARY KEY.
BigId = BigInteger().with_variant(Integer(), "sqlite")
Json = JSON().with_variant(JSONB(), "postgresql")
VectorColumn = LargeBinary().with_variant(VECTOR(), "postgresql")


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    return uuid.uuid4().hex


class Base(DeclarativeBase):
    pass


# Collections and access (issue 22, SPEC-ACCESS-001): every document is in one collection; keys are bound
# to collections, and a document with access groups is seen only by keys sharing one (apps/core/visibility.py).
class Collection(Base):
    __tablename__ = "collections"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Document(Base):
    __tablename__ = "documents"
    __table_args__ = (
        UniqueConstraint("collection_id", "external_id", name="uq_documents_collection_external_id"),
        # Whether any document carries groups is one lookup (apps/search/stores/base.py `leg_visibility`).
        Index("ix_documents_restricted", "id", postgresql_where=text("restricted"), sqlite_where=text("restricted = 1")),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    collection_id: Mapped[int] = mapped_column(Integer, ForeignKey("collections.id"), index=True)
    # The caller's identity of the source (file path, BEIR _id, URL) in its collection; re-ingesting it replaces.
    external_id: Mapped[str | None] = mapped_column(String(512))
    # Carries access groups (rows in document_groups): searched with a group check, kept out of a groupless scan.
    restricted: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    title: Mapped[str] = mapped_column(Text, default="")
    source_url: Mapped[str | None] = mapped_column(Text)
    content_type: Mapped[str] = mapped_column(String(100), default="text/plain")
    checksum: Mapped[str] = mapped_column(String(64), index=True)
    language: Mapped[str] = mapped_column(String(8), index=True)
    taxonomy_path: Mapped[str] = mapped_column(Text, default="", index=True)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", Json, default=dict)
    chunk_count: Mapped[int] = mapped_column(Integer, default=0)
    token_count: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)


class DocumentGroup(Base):
    """A document's access group; a document with none is seen by every key of its collection."""

    __tablename__ = "document_groups"

    document_id: Mapped[str] = mapped_column(String(32), ForeignKey("documents.id", ondelete="CASCADE"),
                                             primary_key=True)
    name: Mapped[str] = mapped_column(String(100), primary_key=True)


class Chunk(Base):
    __tablename__ = "chunks"
    __table_args__ = (
        UniqueConstraint("document_id", "ordinal", name="uq_chunks_document_ordinal"),
        # Never reuse a deleted chunk's id: feedback and logs refer to chunks by id.
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    document_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("documents.id", ondelete="CASCADE"), index=True
    )
    ordinal: Mapped[int] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(Text)
    token_count: Mapped[int] = mapped_column(Integer)
    # Space-joined analysed tokens (stemmed English, Korean content morphemes): what BM25 indexes.
    lexical: Mapped[str] = mapped_column(Text)
    lexical_length: Mapped[int] = mapped_column(Integer)
    language: Mapped[str] = mapped_column(String(8))


class Embedding(Base):
    __tablename__ = "embeddings"

    chunk_id: Mapped[int] = mapped_column(BigId, ForeignKey("chunks.id", ondelete="CASCADE"), primary_key=True)
    model: Mapped[str] = mapped_column(String(200), index=True)
    dim: Mapped[int] = mapped_column(Integer)
    vector: Mapped[Any] = mapped_column(VectorColumn)


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200), default="")
    prefix: Mapped[str] = mapped_column(String(16), unique=True)
    key_hash: Mapped[str] = mapped_column(String(64))
    scope: Mapped[str] = mapped_column(String(10))
    rate_limit_per_minute: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    collections: Mapped[list[str]] = mapped_column(Json, default=lambda: ["*"])  # "*": every collection
    groups: Mapped[list[str]] = mapped_column(Json, default=list)


class IdempotencyKey(Base):
    __tablename__ = "idempotency_keys"

    scope: Mapped[str] = mapped_column(String(64), primary_key=True)
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int] = mapped_column(Integer)
    response: Mapped[dict[str, Any]] = mapped_column(Json)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)


class RequestEvent(Base):
    __tablename__ = "request_events"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    ts: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    endpoint: Mapped[str] = mapped_column(String(200))
    method: Mapped[str] = mapped_column(String(10))
    status: Mapped[int] = mapped_column(Integer)
    latency_ms: Mapped[float] = mapped_column(Float)
    strategy: Mapped[str | None] = mapped_column(String(50))
    variant: Mapped[str | None] = mapped_column(String(20))
    # A per-request quality signal (answer groundedness), for canary analysis.
    quality: Mapped[float | None] = mapped_column(Float)
    llm_provider: Mapped[str | None] = mapped_column(String(50))
    llm_model: Mapped[str | None] = mapped_column(String(200))
    llm_input_tokens: Mapped[int | None] = mapped_column(Integer)
    llm_output_tokens: Mapped[int | None] = mapped_column(Integer)
    llm_cost_usd: Mapped[float | None] = mapped_column(Float)
    llm_ms: Mapped[float | None] = mapped_column(Float)
    # A valid API key was presented: only such requests count in canary windows and health error
    # rates, so traffic without a key (fast 401s, stalled bodies) cannot steer a rollout.
    authenticated: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


class AdminAction(Base):
    """Operator calls that act on every worker (cleanup, graceful restart): the audit trail, and for a
    cleanup also the broadcast each worker polls for and each worker's report of what it freed."""

    __tablename__ = "admin_actions"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(40), index=True)
    detail: Mapped[dict[str, Any]] = mapped_column(Json)


class CorpusState(Base):
    """One row; `generation` increases with every write to the corpus (search caches key on it)."""

    __tablename__ = "corpus_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    generation: Mapped[int] = mapped_column(BigInteger)
    # The Korean analyser `chunks.lexical` was built with; NULL until the first chunk is written.
    lexical_analyzer: Mapped[str | None] = mapped_column(String(20))


class BanditDecision(Base):
    """One served strategy choice; the reward joins later by request id."""

    __tablename__ = "bandit_decisions"

    request_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)
    endpoint: Mapped[str] = mapped_column(String(50))
    state: Mapped[str] = mapped_column(String(120))
    action: Mapped[str] = mapped_column(String(50))
    probabilities: Mapped[dict[str, float]] = mapped_column(Json)
    policy_version: Mapped[int] = mapped_column(BigInteger)
    variant: Mapped[str] = mapped_column(String(20))
    latency_ms: Mapped[float] = mapped_column(Float)
    served_chunk_ids: Mapped[list[int]] = mapped_column(Json)
    replay: Mapped[bool] = mapped_column(Boolean)
    implicit_reward: Mapped[float | None] = mapped_column(Float)
    reward: Mapped[float | None] = mapped_column(Float)
    reward_source: Mapped[str | None] = mapped_column(String(20))
    feedback: Mapped[dict[str, Any] | None] = mapped_column(Json)
    rewarded_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    debated: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    debate_llm_calls: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    debate_cost_usd: Mapped[float] = mapped_column(Float, default=0.0, server_default="0")
    # Whose request it was and what it could see (SPEC-ACCESS-001): feedback is taken from that key alone.
    key_id: Mapped[str | None] = mapped_column(String(32))
    collections: Mapped[list[str] | None] = mapped_column(Json)


class ReplayExperience(Base):
    __tablename__ = "replay_experiences"
    __table_args__ = ({"sqlite_autoincrement": True},)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    request_id: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(120))
    action: Mapped[str] = mapped_column(String(50))
    reward: Mapped[float] = mapped_column(Float)
    propensity: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    applied: Mapped[bool] = mapped_column(Boolean, default=False)


class QValue(Base):
    __tablename__ = "q_values"

    policy: Mapped[str] = mapped_column(String(50), primary_key=True)
    state: Mapped[str] = mapped_column(String(120), primary_key=True)
    action: Mapped[str] = mapped_column(String(50), primary_key=True)
    q: Mapped[float] = mapped_column(Float)
    q_squared: Mapped[float] = mapped_column(Float)  # running mean of the squared targets: the spread
    updates: Mapped[int] = mapped_column(BigInteger)
    experiences: Mapped[int] = mapped_column(BigInteger)  # distinct experiences behind the updates
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class BanditPolicy(Base):
    __tablename__ = "bandit_policies"

    name: Mapped[str] = mapped_column(String(50), primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger)
    learned_through: Mapped[int] = mapped_column(BigInteger)
    batches: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class FlagOverride(Base):
    """A runtime override of a flag, written through the audited admin path."""

    __tablename__ = "flag_overrides"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    enabled: Mapped[bool | None] = mapped_column(Boolean)
    rollout_fraction: Mapped[float | None] = mapped_column(Float)
    user_ids: Mapped[list[str] | None] = mapped_column(Json)
    kill: Mapped[bool] = mapped_column(Boolean, default=False)
    updated_by: Mapped[str] = mapped_column(String(200))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class FlagAudit(Base):
    __tablename__ = "flag_audit"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64))
    actor: Mapped[str] = mapped_column(String(200))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    old: Mapped[dict[str, Any] | None] = mapped_column(Json)
    new: Mapped[dict[str, Any] | None] = mapped_column(Json)
    reason: Mapped[str] = mapped_column(Text)


class Lease(Base):
    """Leader election: whoever holds an unexpired lease acts; expiry is a wall-clock epoch."""

    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(100))
    expires_at: Mapped[float] = mapped_column(Float)


class CanaryEvaluation(Base):
    __tablename__ = "canary_evaluations"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    flag: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)
    verdict: Mapped[str] = mapped_column(String(20))
    action: Mapped[str] = mapped_column(String(20))
    consecutive_failures: Mapped[int] = mapped_column(Integer)
    detail: Mapped[dict[str, Any]] = mapped_column(Json)


class Job(Base):
    """A unit of background work (ingest, reindex, learn). The row is the job's truth: a queue message
    only carries its id, and every attempt claims the row (attempt + 1, a lease) before it runs."""

    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    kind: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(20), index=True)
    mode: Mapped[str] = mapped_column(String(20))  # queue | in_process
    mode_reason: Mapped[str] = mapped_column(Text, default="")
    params: Mapped[dict[str, Any]] = mapped_column(Json, default=dict)
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=3)
    lease_owner: Mapped[str | None] = mapped_column(String(100))
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    run_after: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))  # retry backoff
    progress_done: Mapped[int] = mapped_column(Integer, default=0)
    progress_total: Mapped[int] = mapped_column(Integer, default=0)
    progress_chunks: Mapped[int] = mapped_column(Integer, default=0)
    result: Mapped[dict[str, Any] | None] = mapped_column(Json)
    error: Mapped[str | None] = mapped_column(Text)
    error_kind: Mapped[str | None] = mapped_column(String(20))  # apps.jobs.types.ErrorKind
    owner_key_id: Mapped[str | None] = mapped_column(String(32), index=True)  # the submitting API key; NULL: CLI
    idempotency_scope: Mapped[str | None] = mapped_column(String(64))
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    request_hash: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class JobPayload(Base):
    """An ingest job's input, stored with the job before the request returns: a JSON document
    (`fields` only) or an uploaded file (`filename`, its form `fields` and the bytes)."""

    __tablename__ = "job_payloads"

    job_id: Mapped[str] = mapped_column(String(32), ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    ordinal: Mapped[int] = mapped_column(Integer, primary_key=True)
    filename: Mapped[str | None] = mapped_column(Text)
    fields: Mapped[dict[str, Any]] = mapped_column(Json, default=dict)
    data: Mapped[bytes | None] = mapped_column(LargeBinary)


class JobEvent(Base):
    """What happened to jobs beyond their status: crashes (an expired lease reclaimed), fallbacks,
    migrations, dead letters. The rollback monitor counts crashes here."""

    __tablename__ = "job_events"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(String(32), index=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)
    event: Mapped[str] = mapped_column(String(20))
    detail: Mapped[dict[str, Any]] = mapped_column(Json, default=dict)


# Doors (issue 26, SPEC-DOORS-001): MCP servers DT-RAG may call, and every tool-call decision.
class ToolServer(Base):
    """An MCP server operators registered with `dtrag tools add` (MCP_SERVERS holds the others)."""

    __tablename__ = "tool_servers"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    # stdio: `command` + `args` (+ `env`); http: `url` (+ `headers`). Values may name ${ENV_VARS}.
    command: Mapped[str | None] = mapped_column(Text)
    args: Mapped[list[str]] = mapped_column(Json, default=list)
    env: Mapped[dict[str, str]] = mapped_column(Json, default=dict)
    url: Mapped[str | None] = mapped_column(Text)
    headers: Mapped[dict[str, str]] = mapped_column(Json, default=dict)
    description: Mapped[str] = mapped_column(Text, default="")  # what the server knows: matched against plan parts
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ToolCall(Base):
    """One tool-call decision of the policy gate, in (a client calling DT-RAG's tools) or out (the answer
    graph calling a registered server's), allowed or denied, with why and how the call went."""

    __tablename__ = "tool_calls"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)
    request_id: Mapped[str] = mapped_column(String(64), index=True)
    direction: Mapped[str] = mapped_column(String(3))  # in | out
    key_id: Mapped[str | None] = mapped_column(String(32))
    tool: Mapped[str] = mapped_column(String(200))  # `name` (in) or `server/name` (out)
    decision: Mapped[str] = mapped_column(String(10))  # allowed | denied
    reason: Mapped[str] = mapped_column(String(300))
    arguments: Mapped[dict[str, Any]] = mapped_column(Json, default=dict)
    outcome: Mapped[str | None] = mapped_column(String(20))  # ok | error | timeout; NULL when denied
    latency_ms: Mapped[float | None] = mapped_column(Float)


# Ask page (issue 27, SPEC-ASK-001): conversations, their turns, and what people said about the answers.
class Conversation(Base):
    """A key's conversation: follow-ups are rewritten against its recent turns."""

    __tablename__ = "conversations"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    key_id: Mapped[str] = mapped_column(String(32), index=True)  # the API key that owns it; no other sees it
    title: Mapped[str] = mapped_column(Text, default="")  # the first question, cut short
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)


class ConversationTurn(Base):
    __tablename__ = "conversation_turns"
    __table_args__ = ({"sqlite_autoincrement": True},)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    conversation_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("conversations.id", ondelete="CASCADE"), index=True)
    request_id: Mapped[str] = mapped_column(String(64), index=True)  # what feedback joins by
    endpoint: Mapped[str] = mapped_column(String(10))  # answer | search
    question: Mapped[str] = mapped_column(Text)  # as asked
    rewritten: Mapped[str | None] = mapped_column(Text)  # the standalone question; NULL: it stood alone
    subject: Mapped[str | None] = mapped_column(Text)  # what the turn was about: what a follow-up refers to
    answer: Mapped[str] = mapped_column(Text, default="")
    # What it cited or found: chunk_id, doc_id, title, source_url, snippet.
    sources: Mapped[list[dict[str, Any]]] = mapped_column(Json, default=list)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Feedback(Base):
    """One key's judgement of one answer or search, merged as it changes: the answer's rating (the bandit
    reward), the passages marked relevant or not (kept for case memory), a comment."""

    __tablename__ = "feedback"

    request_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    key_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    endpoint: Mapped[str | None] = mapped_column(String(10))  # answer | search
    rating: Mapped[float | None] = mapped_column(Float)
    helpful: Mapped[bool | None] = mapped_column(Boolean)
    relevant_chunk_ids: Mapped[list[int] | None] = mapped_column(Json)
    irrelevant_chunk_ids: Mapped[list[int] | None] = mapped_column(Json)
    comment: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)


# Case memory (issue 24, SPEC-CASES-001): past questions with the passages judged for them, a learned
# selector of which to reuse, and the log of what it decided.
class Case(Base):
    """A past question of one collection, its query vector and what was judged for it (`case_chunks`)."""

    __tablename__ = "cases"
    __table_args__ = (UniqueConstraint("collection_id", "ref", name="uq_cases_collection_ref"),
                      {"sqlite_autoincrement": True})

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    collection_id: Mapped[int] = mapped_column(Integer, ForeignKey("collections.id", ondelete="CASCADE"), index=True)
    # Where it came from, unique in its collection: `feedback:<key id>:<request id>` or `import:<query id>`.
    ref: Mapped[str] = mapped_column(String(300))
    origin: Mapped[str] = mapped_column(String(10))  # feedback | import
    key_id: Mapped[str | None] = mapped_column(String(32))
    query: Mapped[str] = mapped_column(Text)
    language: Mapped[str] = mapped_column(String(8))
    strategy: Mapped[str | None] = mapped_column(String(50))
    model: Mapped[str] = mapped_column(String(200))  # the query vector's embedding space, as for chunks
    dim: Mapped[int] = mapped_column(Integer)
    vector: Mapped[bytes] = mapped_column(LargeBinary)  # float32, unit length
    reward: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)


class CaseChunk(Base):
    """A passage of a case: judged relevant (+1) or not (-1), or only shown (0). Goes with its chunk: a
    deleted or replaced document takes its passages out of every case."""

    __tablename__ = "case_chunks"

    case_id: Mapped[int] = mapped_column(BigId, ForeignKey("cases.id", ondelete="CASCADE"), primary_key=True)
    chunk_id: Mapped[int] = mapped_column(BigId, ForeignKey("chunks.id", ondelete="CASCADE"), primary_key=True,
                                          index=True)
    shown_rank: Mapped[int | None] = mapped_column(Integer)  # where the request showed it (NULL: not shown)
    judgement: Mapped[float] = mapped_column(Float, default=0.0)


class CaseSelectorVersion(Base):
    """One batch update of the case selector: its parameters per collection, read by every worker."""

    __tablename__ = "case_selectors"

    version: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    parameters: Mapped[dict[str, Any]] = mapped_column(Json)
    examples: Mapped[int] = mapped_column(Integer)
    detail: Mapped[dict[str, Any]] = mapped_column(Json, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class CaseDecision(Base):
    """A request served with case memory on: what it asked and saw, what the selector scored and moved.
    Feedback joins by request id and makes the case; the labelled rows are the selector's logged data."""

    __tablename__ = "case_decisions"

    request_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)
    endpoint: Mapped[str] = mapped_column(String(10))
    key_id: Mapped[str | None] = mapped_column(String(32))
    collections: Mapped[list[str]] = mapped_column(Json)  # what it could see (["*"]: every collection)
    query: Mapped[str] = mapped_column(Text)
    strategy: Mapped[str] = mapped_column(String(50))
    selector_version: Mapped[int | None] = mapped_column(BigInteger)
    served_chunk_ids: Mapped[list[int]] = mapped_column(Json)
    # Per candidate passage: chunk_id, case_id, p (the selector's), base (the ranking's own), moved, features;
    # for one the selector decided on, mu (the chance it was admitted) and admitted.
    candidates: Mapped[list[dict[str, Any]]] = mapped_column(Json)
    changed: Mapped[bool] = mapped_column(Boolean)  # the cases changed the ranking (else it was the plain one)
    latency_ms: Mapped[float] = mapped_column(Float)
    rewarded_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
