"""Request and response bodies of the HTTP API."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, AliasChoices, BaseModel, ConfigDict, Field, field_validator, model_validator

_METADATA_KEY = re.compile(r"^[A-Za-z0-9_.\-]{1,100}$")
MetadataValue = str | int | float | bool | None


def _taxonomy(value: str | list[str] | None) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        segments = value.split("/")
    elif any("/" in s for s in value):
        raise ValueError("taxonomy segments must not contain '/'")
    else:
        segments = value
    joined = "/".join(s.strip() for s in segments if s.strip())
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


NonBlank = Annotated[str, AfterValidator(_not_blank)]


class SearchFiltersIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    taxonomy_path: str | list[str] | None = Field(None, description="prefix by whole segments: 'ai' or ['ai', 'ml']")
    language: Literal["en", "ko"] | None = None
    doc_ids: list[str] | None = Field(None, max_length=1000)
    metadata: dict[str, MetadataValue] | None = Field(None, description="equality on top-level keys")

    _tp = field_validator("taxonomy_path")(lambda cls, v: _taxonomy(v))
    _md = field_validator("metadata")(lambda cls, v: _metadata(v))


class SearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    q: NonBlank = Field(..., min_length=1, max_length=10_000, description="the query, English or Korean")
    final_topk: int = Field(5, ge=1, le=100)
    filters: SearchFiltersIn | None = None
    strategy: str | None = Field(None, description="bm25 | dense | hybrid_rrf | hybrid_cc; default from settings")


class HitOut(BaseModel):
    chunk_id: int
    doc_id: str
    score: float
    text: str
    title: str
    source_url: str | None
    taxonomy_path: str
    ranks: dict[str, int | None]


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


class FeedbackIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    request_id: str = Field(..., min_length=1, max_length=64)
    rating: float | None = Field(None, ge=-1, le=1, description="-1 (useless) .. 1 (perfect)")
    helpful: bool | None = None
    relevant_chunk_ids: list[int] | None = Field(None, max_length=1000,
                                                 description="chunks that answered the query")

    @model_validator(mode="after")
    def _some_signal(self) -> FeedbackIn:
        if self.rating is None and self.helpful is None and self.relevant_chunk_ids is None:
            raise ValueError("give at least one of rating, helpful or relevant_chunk_ids")
        return self


class FeedbackOut(BaseModel):
    request_id: str
    reward: float
    accepted: bool = Field(..., description="false: feedback for this request was already recorded")
    learned: bool = Field(..., description="true: the reward entered the replay buffer")


class DocumentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: NonBlank = Field(..., min_length=1)
    title: str = Field("", max_length=1000)
    external_id: str | None = Field(None, max_length=500, description="your id; re-posting it replaces the document")
    source_url: str | None = Field(None, max_length=2000)
    taxonomy_path: str | list[str] | None = None
    metadata: dict[str, Any] | None = None

    _tp = field_validator("taxonomy_path")(lambda cls, v: _taxonomy(v))
    _md = field_validator("metadata")(lambda cls, v: _metadata(v))



class IngestOut(BaseModel):
    document_id: str
    status: Literal["created", "replaced", "unchanged"]
    chunks: int


class DocumentOut(BaseModel):
    id: str
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


class ApiKeyOut(BaseModel):
    id: str
    name: str
    scope: str
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
