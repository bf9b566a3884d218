"""The input unit of ingestion, however it arrived (file, BEIR line, API call)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from apps.core.visibility import DEFAULT_COLLECTION


def normalise_taxonomy(path: str | list[str] | tuple[str, ...] | None) -> str:
    """`["AI", "ML"]` or `"AI/ML"` → `"AI/ML"`; empty segments dropped."""
    if path is None:
        return ""
    segments = path.split("/") if isinstance(path, str) else list(path)
    return "/".join(s.strip() for s in segments if s and s.strip())


@dataclass
class SourceDocument:
    text: str
    title: str = ""
    external_id: str | None = None
    source_url: str | None = None
    content_type: str = "text/plain"
    taxonomy_path: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    origin: str = "<input>"  # names the input in error messages
    collection: str = DEFAULT_COLLECTION  # the one it belongs to; its identity is unique there
    access_groups: tuple[str, ...] = ()  # none: every key of the collection sees it; else keys sharing one

    @property
    def checksum(self) -> str:
        payload = "\0".join((self.title, self.text, self.taxonomy_path, self.source_url or ""))
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()

    @property
    def identity(self) -> str:
        """The key (within its collection) that makes re-ingesting a no-op or a replacement: the caller's id,
        else the content."""
        return self.external_id or f"sha256:{self.checksum}"
