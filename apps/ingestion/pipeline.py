"""The stages of one `ingest` call, a batch apart: prepare (a thread) → embed → write, with the
queues between them and the report they fill."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Protocol

from apps.ingestion.documents import SourceDocument
from apps.ingestion.reindex import Reindexer
from apps.ingestion.report import DocumentOutcome, IngestProgress, IngestReport, ProgressCallback
from apps.search.embeddings.base import EmbeddingProvider
from apps.search.stores.base import Store
from apps.search.stores.corpus import DocumentWrite
from apps.text.analyzer import Analyzer


@dataclass
class PreparedDocument:
    write: DocumentWrite  # its vectors are filled in by the embedding stage
    embed_inputs: list[str]  # one per chunk


class Ingesting(Protocol):
    """What a run needs of the ingestion service (`apps.ingestion.service.IngestionService`)."""

    store: Store
    embedder: EmbeddingProvider
    analyzer: Analyzer
    reindexer: Reindexer

    def prepare(self, doc: SourceDocument, collection_id: int) -> PreparedDocument: ...

    def _write_of(self, doc: SourceDocument, collection_id: int) -> DocumentWrite: ...


class IngestRun:
    """One `ingest` call's pipeline: its stages, the queues of one batch between them, its report."""

    def __init__(self, service: Ingesting, on_progress: ProgressCallback | None) -> None:
        self.service = service
        self.on_progress = on_progress
        self.report = IngestReport()
        self.start = time.perf_counter()
        self.done = 0  # documents, counting unchanged ones
        self._prepared: asyncio.Queue[list[PreparedDocument] | None] = asyncio.Queue(maxsize=1)
        self._embedded: asyncio.Queue[list[PreparedDocument] | None] = asyncio.Queue(maxsize=1)
        # A failing stage ends its stream, so the batches finished before it are still written; the
        # failure is raised once the writer is done. A failing write stops everything (TaskGroup).
        self._failures: list[Exception] = []
        self._preparing: asyncio.Task[None] | None = None
        self.collection_ids: dict[str, int] = {}

    def progress(self) -> None:
        if self.on_progress:
            r = self.report
            self.on_progress(IngestProgress(self.done, r.chunks, r.tokens, time.perf_counter() - self.start))

    async def write_fields(self, documents: list[SourceDocument]) -> list[SourceDocument]:
        """New metadata or content type of unchanged texts, one transaction; returns those whose stored
        text changed meanwhile (another writer): they need the whole pipeline."""
        if not documents:
            return []
        s = self.service
        outcomes = await s.store.write_documents([s._write_of(d, self.collection_ids[d.collection]) for d in documents],
                                                 s.reindexer.space, s.analyzer.korean)
        stale = [d for d, o in zip(documents, outcomes) if o.status == "stale"]
        for o in outcomes:
            if o.status != "stale" and o.document_id is not None:
                self.report.add(DocumentOutcome(o.document_id, o.identity, o.status, o.chunks))
        self.done += len(documents) - len(stale)
        self.progress()
        return stale

    async def pipeline(self, batches: list[list[SourceDocument]]) -> None:
        try:
            async with asyncio.TaskGroup() as stages:
                self._preparing = stages.create_task(self._prepare_stage(batches))
                stages.create_task(self._embed_stage())
                stages.create_task(self._write_stage())
        except ExceptionGroup as failed:
            raise failed.exceptions[0] from None
        if self._failures:
            raise self._failures[0]

    async def _prepare_stage(self, batches: list[list[SourceDocument]]) -> None:
        try:
            for batch in batches:
                await self._prepared.put(await asyncio.to_thread(self._prepare_batch, batch))
        except Exception as exc:
            self._failures.append(exc)
        await self._prepared.put(None)

    def _prepare_batch(self, batch: list[SourceDocument]) -> list[PreparedDocument]:
        return [self.service.prepare(d, self.collection_ids[d.collection]) for d in batch]

    async def _embed_stage(self) -> None:
        try:
            while (batch := await self._prepared.get()) is not None:
                started = time.perf_counter()
                vectors = await self.service.embedder.embed_passages([t for d in batch for t in d.embed_inputs])
                self.report.embed_seconds += time.perf_counter() - started
                position = 0
                for d in batch:
                    d.write.vectors = vectors[position : position + len(d.embed_inputs)]
                    position += len(d.embed_inputs)
                await self._embedded.put(batch)
        except Exception as exc:
            self._failures.append(exc)
            if self._preparing is not None:
                self._preparing.cancel()  # nothing it prepares from here on would be embedded
        await self._embedded.put(None)

    async def _write_stage(self) -> None:
        s = self.service
        while (batch := await self._embedded.get()) is not None:
            outcomes = await s.store.write_documents([d.write for d in batch], s.reindexer.space, s.analyzer.korean)
            for o, d in zip(outcomes, batch):
                assert o.document_id is not None  # every document in the batch carries its vectors
                self.report.add(DocumentOutcome(o.document_id, o.identity, o.status, o.chunks),
                                sum(c.token_count for c in d.write.chunks))
            self.done += len(batch)
            self.progress()
