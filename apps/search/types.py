"""Value types shared by retrieval, its stores and its callers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class SearchFilters:
    taxonomy_path: str | None = None  # prefix: "ai" matches "ai" and "ai/ml", not "air"
    language: str | None = None
    doc_ids: tuple[str, ...] | None = None
    metadata: dict[str, Any] | None = None  # equality on top-level keys

    @property
    def empty(self) -> bool:
        return not (self.taxonomy_path or self.language or self.doc_ids is not None or self.metadata)


@dataclass(frozen=True)
class ChunkRecord:
    chunk_id: int
    doc_id: str
    text: str
    title: str
    source_url: str | None
    taxonomy_path: str
    external_id: str | None
    language: str


@dataclass(frozen=True)
class LegHit:
    chunk_id: int
    score: float


@dataclass
class Hit:
    chunk_id: int
    doc_id: str
    score: float
    text: str = ""
    title: str = ""
    source_url: str | None = None
    taxonomy_path: str = ""
    external_id: str | None = None
    language: str = ""
    ranks: dict[str, int | None] = field(default_factory=dict)
    scores: dict[str, float | None] = field(default_factory=dict)


@dataclass
class SearchResult:
    hits: list[Hit]
    strategy: str
    latency_ms: float
    total_candidates: int
    degraded: bool = False
    degraded_reasons: list[str] = field(default_factory=list)
    timings_ms: dict[str, float] = field(default_factory=dict)
    cached: bool = False
