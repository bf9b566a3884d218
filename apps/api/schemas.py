"""Request and response bodies of the HTTP API."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, AliasChoices, BaseModel, ConfigDict, Field, field_validator, model_validator

from apps.core.visibility import Visibility
from apps.ingestion.documents import normalise_taxonomy
from apps.ingestion.validation import DocumentFields
from apps.jobs.types import JobStatus
from apps.orchestration.src.answer_models import CasesOut, PlanOut
from apps.search.types import SearchFilters

_METADATA_KEY = re.compile(r"^[A-Za-z0-9_.\-]{1,100}$")
MetadataValue = str | int | float | bool | None


def _taxonomy(value: str | list[str] | None) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) and any("/" in s for s in value):
        raise ValueError("taxonomy segments must not contain '/'")
    joined = normalise_taxonomy(value)
    if len(joined) > 1000:
        raise ValueError("taxonomy path is longer than 1000 characters")
    return joined or None


def _metadata(value: dict[str, Any] | None) -> dict[str, Any] | None:
    if value is None:
        return None
    for key in value:
        if not _METADATA_KEY.match(key):
            raise ValueError(f"metadata key {key!r} must be 1-100 characters of letters, digits, '_', '.', '-'")
    return value


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be blank")
    return value


def _question(value: str) -> str:
    """Stripped, so every door searches the same text: a trailing space moves a query's vector a little,
    enough to swap two near-tied passages."""
    return _not_blank(value).strip()


NonBlank = Annotated[str, AfterValidator(_not_blank)]
Question = Annotated[str, AfterValidator(_question)]
ConversationId = Annotated[str, Field(pattern=r"^[0-9a-f]{32}$", description="from POST /api/v1/conversations: "
                                      "the question is a turn of it, a follow-up rewritten against its last turns")]


class SearchFiltersIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    taxonomy_path: str | list[str] | None = Field(None, description="prefix by whole segments: 'ai' or ['ai', 'ml']")
    language: Literal["en", "ko"] | None = None
    doc_ids: list[str] | None = Field(None, max_length=1000)
    metadata: dict[str, MetadataValue] | None = Field(None, description="equality on top-level keys")

    _tp = field_validator("taxonomy_path")(lambda cls, v: _taxonomy(v))
    _md = field_validator("metadata")(lambda cls, v: _metadata(v))


def to_filters(f: SearchFiltersIn | None, visibility: Visibility) -> SearchFilters:
    """A request's filters, with what its key may see (`apps.api.deps.VisibilityDep`, narrowed by the
    request's `collections`): required, so no route builds filters that see more than its key."""
    if f is None:
        return SearchFilters(visibility=visibility)
    return SearchFilters(
        taxonomy_path=f.taxonomy_path,  # type: ignore[arg-type]  (normalised to str by the schema)
        language=f.language,
        doc_ids=tuple(f.doc_ids) if f.doc_ids is not None else None,
        metadata=f.metadata or None,
        visibility=visibility,
    )


CollectionName = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9_.\-]{0,63}$")]
Collections = Annotated[list[CollectionName] | None, Field(
    min_length=1, max_length=100,
    description="search only these collections (default: every one the key may use; another is a 403)")]


class SearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    q: Question = Field(..., min_length=1, max_length=10_000, description="the query, English or Korean")
    final_topk: int = Field(5, ge=1, le=100)
    filters: SearchFiltersIn | None = None
    strategy: str | None = Field(None, description="bm25 | dense | hybrid_rrf | hybrid_cc; default from settings")
    plan: bool | None = Field(None, description="split a multi-part query and search each part (true), never "
                                                "(false); default: the meta_planner flag")
    conversation_id: ConversationId | None = None
    collections: Collections = None


class HitOut(BaseModel):
    chunk_id: int
    doc_id: str
    score: float
    text: str
    title: str
    source_url: str | None
    taxonomy_path: str
    ranks: dict[str, int | None]
    collection: str = Field("", description="the collection of the hit's document")
    case_ids: list[int] | None = Field(None, description="with case memory on: the past cases that moved this hit "
                                                         "up (its place among them in ranks.cases); empty: the "
                                                         "plain ranking found it")


class BanditOut(BaseModel):
    state: str = Field(..., description="the query's context key")
    probabilities: dict[str, float] = Field(..., description="the policy the strategy was drawn from")
    policy_version: int


class SearchResponse(BaseModel):
    hits: list[HitOut]
    strategy: str
    latency_ms: float
    request_id: str = Field(..., description="send it back with POST /api/v1/feedback")
    total_candidates: int
    degraded: bool
    degraded_reasons: list[str] = []
    cached: bool = False
    pipeline_variant: str = "legacy"
    bandit: BanditOut | None = Field(None, description="present when the bandit chose the strategy")
    plan: PlanOut | None = Field(None, description="present when the query was planned: its parts, each with the "
                                                   "strategy and the hits it holds in the merged list")
    rewritten_question: str | None = Field(None, description="a follow-up: the standalone query searched")
    conversation_id: str | None = None
    cases: CasesOut | None = Field(None, description="with the neural_case_selector flag: what case memory did")


class FeedbackIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    request_id: str = Field(..., min_length=1, max_length=64)
    rating: float | None = Field(None, ge=-1, le=1, description="-1 (useless) .. 1 (perfect)")
    helpful: bool | None = None
    relevant_chunk_ids: list[int] | None = Field(None, max_length=1000,
                                                 description="chunks that answered the query; alone, the reward is "
                                                             "the nDCG of the served ranking against them")
    irrelevant_chunk_ids: list[int] | None = Field(None, max_length=1000, description="chunks that did not; with it "
                                                   "both lists are per-passage marks, kept, and not a reward")
    comment: str | None = Field(None, max_length=2000)

    @model_validator(mode="after")
    def _some_signal(self) -> FeedbackIn:
        if all(v is None for v in (self.rating, self.helpful, self.relevant_chunk_ids, self.irrelevant_chunk_ids,
                                   self.comment)):
            raise ValueError("give at least one of rating, helpful, relevant_chunk_ids, irrelevant_chunk_ids or "
                             "comment")
        return self


class FeedbackOut(BaseModel):
    request_id: str
    reward: float | None = Field(..., description="the bandit's reward (null: no rating, or no decision behind it)")
    accepted: bool = Field(..., description="false: feedback for this request was already recorded")
    learned: bool = Field(..., description="true: the reward entered the replay buffer")


class DocumentIn(DocumentFields):
    """A document as JSON: its text, and the fields every way a document arrives is checked by
    (`apps.ingestion.validation.DocumentFields`: limits, http(s) source URLs, metadata keys)."""

    text: NonBlank = Field(..., min_length=1)


class BatchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    documents: list[DocumentIn] = Field(..., min_length=1, max_length=10_000)


class JobAccepted(BaseModel):
    job_id: str
    status: JobStatus


class AnswerIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    q: Question = Field(..., min_length=1, max_length=4000, description="the question, English or Korean")
    mode: Literal["answer", "summary", "keypoints", "debate"] = Field(
        "answer", description="debate: agents on different shares of the evidence settle the answer")
    final_topk: int = Field(5, ge=1, le=20, description="chunks to compose from")
    filters: SearchFiltersIn | None = None
    strategy: str | None = None
    provider: Literal["extractive", "gemini", "openai", "local"] | None = Field(None, description="default from settings")
    stream: bool = False
    conversation_id: ConversationId | None = None
    collections: Collections = None


class IngestOut(BaseModel):
    document_id: str
    status: Literal["created", "replaced", "updated", "unchanged"] = Field(
        ..., description="updated: the same text with new metadata, stored without re-embedding")
    chunks: int


class DocumentOut(BaseModel):
    id: str
    collection: str
    access_groups: list[str] = Field(default_factory=list, description="only keys carrying one of them see it")
    external_id: str | None
    title: str
    source_url: str | None
    content_type: str
    checksum: str
    language: str
    taxonomy_path: str
    metadata: dict[str, Any]
    chunk_count: int
    token_count: int
    created_at: datetime
    updated_at: datetime


class DocumentPage(BaseModel):
    items: list[DocumentOut]
    total: int
    limit: int
    offset: int


class ChunkOut(BaseModel):
    id: int
    ordinal: int
    text: str
    token_count: int
    language: str


class TaxonomyNode(BaseModel):
    name: str
    path: str
    document_count: int
    children: list[TaxonomyNode] = []


class ApiKeyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    scope: Literal["read", "write", "admin"]
    name: str = Field("", max_length=200)
    expires_in_days: float | None = Field(None, gt=0, le=3650)
    rate_limit_per_minute: int | None = Field(None, ge=1, le=1_000_000)
    collections: list[Annotated[str, Field(min_length=1, max_length=64)]] | None = Field(
        None, min_length=1, max_length=100, description='the collections it may use; default ["*"]: every one')
    groups: list[Annotated[str, Field(min_length=1, max_length=100)]] | None = Field(
        None, max_length=100, description="access groups: it sees documents carrying one of them")


class ApiKeyOut(BaseModel):
    id: str
    name: str
    scope: str
    collections: list[str] = ["*"]
    groups: list[str] = []
    rate_limit_per_minute: int | None
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    active: bool


class ApiKeyCreated(ApiKeyOut):
    api_key: str = Field(..., description="shown once; store it now")


class FlagUpdateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool | None = None
    rollout_fraction: float | None = Field(
        None, ge=0, le=1, validation_alias=AliasChoices("rollout_fraction", "rollout_percentage"),
        description="a fraction: 0.1 = 10 % (the older name rollout_percentage is accepted too)")
    user_ids: list[Annotated[str, Field(min_length=1, max_length=200)]] | None = Field(None, max_length=10_000)
    kill: bool | None = Field(None, description="kill switch: off for everyone, allowlist included")
    reason: NonBlank = Field(..., min_length=1, max_length=500)

    @model_validator(mode="after")
    def _some_change(self) -> FlagUpdateIn:
        if self.enabled is None and self.rollout_fraction is None and self.user_ids is None and self.kill is None:
            raise ValueError("give at least one of enabled, rollout_fraction, user_ids or kill")
        return self


class CollectionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: CollectionName
    description: str = Field("", max_length=2000)


class CollectionPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    description: str = Field(..., max_length=2000)


class CollectionOut(BaseModel):
    name: str
    description: str
    created_at: datetime
    documents: int
    chunks: int
