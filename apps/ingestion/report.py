"""What an ingest reports: progress while it runs, the outcome of every document when it is done."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from apps.ingestion.errors import IngestError


@dataclass(frozen=True)
class IngestProgress:
    documents: int  # done, counting unchanged ones
    chunks: int  # written
    tokens: int  # written
    seconds: float

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0


ProgressCallback = Callable[[IngestProgress], None]


@dataclass
class DocumentOutcome:
    document_id: str
    identity: str
    status: str  # created | replaced | updated (metadata only, not re-embedded) | unchanged
    chunks: int


@dataclass
class IngestReport:
    documents: int = 0
    created: int = 0
    replaced: int = 0
    updated: int = 0
    unchanged: int = 0
    chunks: int = 0  # written
    tokens: int = 0  # written
    seconds: float = 0.0
    embed_seconds: float = 0.0
    outcomes: list[DocumentOutcome] = field(default_factory=list)
    skipped: list[IngestError] = field(default_factory=list)  # with skip_invalid: what was left out, and why

    def add(self, outcome: DocumentOutcome, tokens: int = 0) -> None:
        self.outcomes.append(outcome)
        setattr(self, outcome.status, getattr(self, outcome.status) + 1)
        if outcome.status in ("created", "replaced"):
            self.chunks += outcome.chunks
            self.tokens += tokens

    @property
    def docs_per_second(self) -> float:
        return self.documents / self.seconds if self.seconds else 0.0

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0
