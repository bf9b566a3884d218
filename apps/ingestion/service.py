"""Ingestion: validate → prepare (chunks, lexical tokens) → embed → write, one transaction per batch.

Re-ingesting a document with the same identity and content is a no-op; new metadata alone is
written without re-embedding; changed content keeps the document's id and has its chunks (and, by
cascade, vectors and postings) replaced in the same transaction that writes the new ones, so a reader
sees the old version or the new one, never a mix. The SQL is the store's (`apps.search.stores.corpus`);
the compatibility check and `dtrag reindex` are `apps.ingestion.reindex`'s.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

from apps.core.config import Settings
from apps.core.visibility import EVERYTHING, Visibility
from apps.ingestion.chunking import chunk_text, embed_input
from apps.ingestion.documents import SourceDocument
from apps.ingestion.pipeline import IngestRun, PreparedDocument
from apps.ingestion.errors import IngestError
from apps.ingestion.reindex import Reindexer
from apps.ingestion.report import DocumentOutcome, IngestProgress, IngestReport, ProgressCallback
from apps.ingestion.validation import checked
from apps.search.embeddings.base import EmbeddingProvider
from apps.search.stores.base import Store
from apps.search.stores.corpus import ChunkWrite, DocumentWrite
from apps.text.analyzer import Analyzer
from apps.text.language import detect_language

__all__ = ["IngestionService", "IngestProgress", "IngestReport", "ProgressCallback", "embed_input"]

log = logging.getLogger(__name__)


class IngestionService:
    def __init__(self, store: Store, embedder: EmbeddingProvider, analyzer: Analyzer, settings: Settings) -> None:
        self.store = store
        self.embedder = embedder
        self.analyzer = analyzer
        self.settings = settings
        self.reindexer = Reindexer(store, embedder, analyzer)

    def validate(self, doc: SourceDocument) -> SourceDocument:
        """The checks that can refuse a document, cheap enough to run over a whole upload first; the
        document comes back with its fields normalised (see `apps.ingestion.validation`)."""
        doc = checked(doc)
        if not doc.text.strip():
            raise IngestError(doc.origin, "contains no text")
        size = len(doc.text.encode("utf-8"))
        if size > self.settings.max_document_bytes:
            raise IngestError(
                doc.origin, f"text is {size:,} bytes, over the {self.settings.max_document_bytes:,}-byte limit"
            )
        return doc

    def prepare(self, doc: SourceDocument, collection_id: int) -> PreparedDocument:
        """CPU work of one validated document: chunking, lexical analysis, token counts."""
        count = self.embedder.count_tokens
        title_tokens = count(doc.title) + 1 if doc.title else 0
        budget = max(self.settings.chunk_tokens - title_tokens, self.settings.chunk_tokens // 2)
        drafts = chunk_text(doc.text, count, budget, min(self.settings.chunk_overlap_tokens, budget // 2))
        inputs = [embed_input(doc.title, draft.text) for draft in drafts]
        chunks = [ChunkWrite(draft.text, draft.token_count + title_tokens, self.analyzer.tokens(full),
                             detect_language(draft.text)) for draft, full in zip(drafts, inputs)]
        if not chunks:
            raise IngestError(doc.origin, "contains no text")
        return PreparedDocument(self._write_of(doc, collection_id, detect_language(doc.text), chunks), inputs)

    @staticmethod
    def _write_of(doc: SourceDocument, collection_id: int, language: str = "",
                  chunks: list[ChunkWrite] | None = None) -> DocumentWrite:
        return DocumentWrite(collection_id=collection_id, identity=doc.identity, checksum=doc.checksum,
                             title=doc.title, source_url=doc.source_url, content_type=doc.content_type,
                             language=language, taxonomy_path=doc.taxonomy_path, metadata=doc.metadata,
                             groups=tuple(doc.access_groups), chunks=chunks or [])

    async def _placed(self, documents: list[SourceDocument], visibility: Visibility,
                      skipped: list[IngestError] | None) -> tuple[list[SourceDocument], dict[str, int]]:
        """The documents whose collection exists and which the writer may put there with their groups
        (a writer bound by groups gives only groups it has), and the collections' ids."""
        ids = await self.store.collection_ids({d.collection for d in documents})
        placed = []
        for doc in documents:
            try:
                if not visibility.may_use(doc.collection):
                    raise IngestError(doc.origin, f"this key may not write to collection {doc.collection!r}")
                if doc.collection not in ids:
                    raise IngestError(doc.origin, f"no collection named {doc.collection!r}: create it first "
                                                  "(POST /api/v1/collections, or dtrag ingest --collection)")
                foreign = set(doc.access_groups) - visibility.groups if visibility.groups is not None else set()
                if foreign:
                    raise IngestError(doc.origin, "this key may not give access groups it does not carry: "
                                                  + ", ".join(sorted(foreign)))
                placed.append(doc)
            except IngestError as exc:
                if skipped is None:
                    raise
                skipped.append(exc)
        return placed, ids

    def _valid(self, documents: Sequence[SourceDocument], skipped: list[IngestError] | None) -> list[SourceDocument]:
        valid = []
        for doc in documents:
            try:
                valid.append(self.validate(doc))
            except IngestError as exc:
                if skipped is None:
                    raise
                skipped.append(exc)
        return valid

    # The corpus-wide upkeep is the reindexer's; these two keep the service the one handle its callers
    # (the API's warm-up, `dtrag reindex`, reindex jobs) hold.
    async def check_compatible(self) -> None:
        await self.reindexer.check_compatible()

    async def reindex(self, page_size: int = 256, on_progress: Callable[[int, int], None] | None = None) -> int:
        return await self.reindexer.reindex(page_size, on_progress)

    async def delete(self, document_id: str, visibility: Visibility) -> bool:
        """Delete a document `visibility` allows (False for any other, as for none); chunks, vectors and
        postings go with it by cascade."""
        return await self.store.delete_document(document_id, visibility)

    async def ingest(
        self,
        documents: Sequence[SourceDocument],
        batch_size: int = 64,
        on_progress: ProgressCallback | None = None,
        skip_invalid: bool = False,
        visibility: Visibility = EVERYTHING,
    ) -> IngestReport:
        """Validate every document first (nothing is written if one is bad, unless `skip_invalid`
        leaves the bad ones out and lists them), then write new metadata of unchanged texts in one
        transaction and new or changed documents in batches of `batch_size`, one transaction each.

        Three stages overlap, each a batch apart: chunking and lexical analysis (a thread), embedding
        (the provider: its own thread, or requests in flight to a server) and the database write. A
        crash loses at most the batches not yet committed; running the same ingest again skips every
        committed document by its checksum (and the passage cache, when set, has the rest's vectors).

        `visibility` is the writer's (a job's submitting key's; the operator's by default): it writes only
        to collections it may use, gives only groups it carries, and replaces only documents it can see."""
        run = IngestRun(self, on_progress)
        skipped = run.report.skipped if skip_invalid else None
        placed, run.collection_ids = await self._placed(self._valid(documents, skipped), visibility, skipped)
        by_key = {(run.collection_ids[d.collection], d.identity): d for d in placed}
        stored = await self.store.stored_documents(set(by_key))
        changed, fields_only = [], []
        for key, doc in list(by_key.items()):  # the same identity twice in a collection: the last one wins
            old = stored.get(key)
            if old is not None and not visibility.allows(doc.collection, old.groups):
                hidden = IngestError(doc.origin, f"a document with this identity in {doc.collection!r} is one this "
                                                 "key may not see; it was left as it is")
                if skipped is None:
                    raise hidden
                skipped.append(hidden)
                del by_key[key]
            elif old is None or old.checksum != doc.checksum:
                changed.append(doc)
            elif (old.metadata, old.content_type, old.groups) != (doc.metadata, doc.content_type,
                                                                   frozenset(doc.access_groups)):
                fields_only.append(doc)
            else:
                run.report.add(DocumentOutcome(old.id, doc.identity, "unchanged", old.chunk_count))
        run.done = run.report.unchanged
        if changed or fields_only:
            await self.check_compatible()
        run.progress()
        changed += await run.write_fields(fields_only)
        await run.pipeline([changed[i : i + batch_size] for i in range(0, len(changed), batch_size)])
        report = run.report
        report.documents = len(by_key)
        report.seconds = time.perf_counter() - run.start
        log.info("ingested", extra={f"ingest_{k}": getattr(report, k)
                                    for k in ("documents", "created", "replaced", "updated", "unchanged", "chunks")}
                 | {"ingest_tokens_per_s": round(report.tokens_per_second)})
        return report

