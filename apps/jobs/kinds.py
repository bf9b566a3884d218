"""What each job kind does. Each reuses the service that owns the work, whose writes make a retried
attempt harmless: ingestion replaces a document's chunks in the transaction that writes the new ones
(and skips unchanged ones), reindex skips chunks already on the model, learning applies what the
replay buffer holds."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from apps.core.visibility import Visibility
from apps.ingestion.documents import SourceDocument
from apps.ingestion.errors import EmbeddingMismatchError, IngestError
from apps.ingestion.parsing import DocumentParser
from apps.ingestion.service import IngestionService
from apps.jobs.store import Payload
from apps.jobs.types import ErrorKind, JobKind
from apps.orchestration.src.bandit.service import StrategyBandit

# Progress is (done, total, chunks); the executor persists it with the next heartbeat.
Progress = Callable[[int, int, int], None]


def permanent_error(exc: BaseException) -> ErrorKind | None:
    """The kind of an error a retry cannot fix (the job fails at once with it), None for any other."""
    if isinstance(exc, IngestError):
        return ErrorKind.invalid_input
    if isinstance(exc, EmbeddingMismatchError):
        return ErrorKind.conflict
    return None


def document_fields(doc: SourceDocument) -> dict[str, Any]:
    """A document as a stored payload (the inverse of `_from_fields`)."""
    return {"text": doc.text, "title": doc.title, "external_id": doc.external_id, "source_url": doc.source_url,
            "content_type": doc.content_type, "taxonomy_path": doc.taxonomy_path, "metadata": doc.metadata,
            "origin": doc.origin, "collection": doc.collection, "access_groups": list(doc.access_groups)}


def _from_fields(fields: dict[str, Any]) -> SourceDocument:
    return SourceDocument(**{k: v for k, v in fields.items() if v is not None})


@dataclass
class JobKinds:
    ingestion: IngestionService
    parser: DocumentParser
    bandit: StrategyBandit
    batch_documents: int

    async def documents(self, payloads: list[Payload]) -> list[SourceDocument]:
        documents: list[SourceDocument] = []
        for p in payloads:
            if p.filename is None:
                documents.append(_from_fields(p.fields))
                continue
            documents.extend(await self.parser.parse(p.filename, p.data or b"", self.ingestion.settings.max_document_bytes,
                                                     **p.fields))
        return documents

    async def run(self, kind: str, params: dict[str, Any], payloads: Callable[[], Awaitable[list[Payload]]],
                  progress: Progress) -> dict[str, Any]:
        if kind == JobKind.ingest:
            documents = await self.documents(await payloads())
            total = len(documents)
            progress(0, total, 0)
            # The submitting key's view: it may write only where it may see (SPEC-ACCESS-001).
            report = await self.ingestion.ingest(documents, batch_size=self.batch_documents,
                                                 on_progress=lambda p: progress(p.documents, total, p.chunks),
                                                 visibility=Visibility.from_json(params.get("visibility")))
            return {"documents": [{"document_id": o.document_id, "status": o.status, "chunks": o.chunks}
                                  for o in report.outcomes],
                    **{k: getattr(report, k) for k in ("created", "replaced", "unchanged", "chunks", "tokens")},
                    "seconds": round(report.seconds, 3)}
        if kind == JobKind.reindex:
            count = await self.ingestion.reindex(on_progress=lambda done, total: progress(done, total, done))
            return {"reembedded": count, "model": self.ingestion.embedder.name}
        if kind == JobKind.learn:
            settled = await self.bandit.settle() if params.get("settle", True) else 0
            await self.bandit.drain()
            batches = int(params.get("batches", 1))
            applied = await self.bandit.learn(batches)
            progress(batches, batches, 0)
            await self.bandit.learner.refresh(force=True)
            return {"settled": settled, "applied": applied, "policy_version": self.bandit.learner.version}
        raise ValueError(f"unknown job kind {kind!r}")
