"""Value types shared by retrieval, its stores and its callers."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from apps.core.visibility import Visibility

_INT64 = 2**63


class FilterLimitError(ValueError):
    """Filters beyond the configured caps or not comparable in SQL: the caller's error (HTTP 422)."""


@dataclass(frozen=True)
class SearchFilters:
    taxonomy_path: str | None = None  # prefix: "ai" matches "ai" and "ai/ml", not "air"
    language: str | None = None
    doc_ids: tuple[str, ...] | None = None
    metadata: dict[str, Any] | None = None  # equality on top-level keys
    # What the request may see (apps/core/visibility.py): set from the key by the API's `to_filters`; left
    # None, a search runs with its request's (or, outside any request, the operator's: everything).
    visibility: Visibility | None = None

    @property
    def empty(self) -> bool:
        """No filter besides what is visible."""
        return not (self.taxonomy_path or self.language or self.doc_ids is not None or self.metadata)

    def check(self, max_metadata_keys: int, max_value_chars: int) -> None:
        """Raises FilterLimitError unless the filters fit the caps (each metadata key is one SQL
        condition; SQLite refuses an expression deeper than 1000) and every value is one the database
        can compare (a 64-bit integer, a finite number, a string of bounded length)."""
        metadata = self.metadata or {}
        if len(metadata) > max_metadata_keys:
            raise FilterLimitError(f"filters.metadata has {len(metadata)} keys; at most {max_metadata_keys} "
                                   "(SEARCH_MAX_METADATA_FILTERS)")
        for key, value in metadata.items():
            if isinstance(value, str) and len(value) > max_value_chars:
                raise FilterLimitError(f"filters.metadata.{key} is longer than {max_value_chars} characters "
                                       "(SEARCH_MAX_FILTER_VALUE_CHARS)")
            if isinstance(value, float) and not math.isfinite(value):
                raise FilterLimitError(f"filters.metadata.{key} must be a finite number")
            if isinstance(value, int) and not isinstance(value, bool) and not -_INT64 <= value < _INT64:
                raise FilterLimitError(f"filters.metadata.{key} is outside the 64-bit integer range")
        for doc_id in self.doc_ids or ():
            if len(doc_id) > max_value_chars:
                raise FilterLimitError(f"a filters.doc_ids entry is longer than {max_value_chars} characters "
                                       "(SEARCH_MAX_FILTER_VALUE_CHARS)")


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
    collection: str


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
    collection: str = ""
    ranks: dict[str, int | None] = field(default_factory=dict)
    scores: dict[str, float | None] = field(default_factory=dict)
    case_ids: list[int] = field(default_factory=list)  # with case memory on: the past cases that moved it up


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
    # With case memory on (None: off): selector_version, rule (the fixed rule decided), case_ids (the close
    # cases considered), changed (False: the plain ranking, exactly).
    cases: dict[str, Any] | None = None
