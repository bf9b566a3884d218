"""Ingestion: documents → chunks → lexical tokens + embeddings → one transaction per batch.

Re-ingesting a document with the same identity and checksum is a no-op; a changed one keeps its id
and has its chunks (and, by cascade, vectors and postings) replaced in the same transaction that
writes the new ones, so a reader sees the old version or the new one, never a mix.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field

import numpy as np
from sqlalchemy import bindparam, delete, insert, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection
from tenacity import retry, retry_if_exception_type, stop_after_attempt

from apps.core.config import Settings
from apps.core.corpus_state import bump_generation, claim_lexical_analyzer, lexical_analyzer
from apps.core.db import write_transaction
from apps.core.models import Chunk, Document, Embedding, new_id, utcnow
from apps.ingestion.chunking import chunk_text
from apps.ingestion.documents import SourceDocument
from apps.ingestion.errors import AnalyzerMismatchError, EmbeddingMismatchError, IngestError
from apps.search.embeddings.base import EmbeddingProvider
from apps.search.stores.base import Store
from apps.text.analyzer import Analyzer
from apps.text.language import detect_language

log = logging.getLogger(__name__)



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
class PreparedChunk:
    text: str
    token_count: int
    tokens: tuple[str, ...]
    language: str
    embed_input: str


@dataclass
class PreparedDocument:
    source: SourceDocument
    checksum: str
    language: str
    chunks: list[PreparedChunk]
    vectors: np.ndarray | None = None


@dataclass
class DocumentOutcome:
    document_id: str
    identity: str
    status: str  # created | replaced | unchanged
    chunks: int


@dataclass
class IngestReport:
    documents: int = 0
    created: int = 0
    replaced: int = 0
    unchanged: int = 0
    chunks: int = 0
    tokens: int = 0
    seconds: float = 0.0
    embed_seconds: float = 0.0
    outcomes: list[DocumentOutcome] = field(default_factory=list)
    skipped: list[IngestError] = field(default_factory=list)  # with skip_invalid: what was left out, and why

    @property
    def docs_per_second(self) -> float:
        return self.documents / self.seconds if self.seconds else 0.0

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0


def embed_input(title: str, chunk: str) -> str:
    # The title travels with every chunk: it often carries the words a query uses.
    return f"{title}\n{chunk}" if title else chunk


class IngestionService:
    def __init__(self, store: Store, embedder: EmbeddingProvider, analyzer: Analyzer, settings: Settings) -> None:
        self.store = store
        self.embedder = embedder
        self.analyzer = analyzer
        self.settings = settings
        self._indexed_dims: set[int] = set()

    def validate(self, doc: SourceDocument) -> None:
        """The checks that can refuse a document, cheap enough to run over a whole upload first."""
        if not doc.text.strip():
            raise IngestError(doc.origin, "contains no text")
        size = len(doc.text.encode("utf-8"))
        if size > self.settings.max_document_bytes:
            raise IngestError(
                doc.origin, f"text is {size:,} bytes, over the {self.settings.max_document_bytes:,}-byte limit"
            )

    def prepare(self, doc: SourceDocument) -> PreparedDocument:
        """CPU work of one validated document: chunking, lexical analysis, token counts."""
        count = self.embedder.count_tokens
        title_tokens = count(doc.title) + 1 if doc.title else 0
        budget = max(self.settings.chunk_tokens - title_tokens, self.settings.chunk_tokens // 2)
        drafts = chunk_text(doc.text, count, budget, min(self.settings.chunk_overlap_tokens, budget // 2))
        chunks = []
        for draft in drafts:
            full = embed_input(doc.title, draft.text)
            chunks.append(
                PreparedChunk(
                    text=draft.text,
                    token_count=draft.token_count + title_tokens,
                    tokens=self.analyzer.tokens(full),
                    language=detect_language(draft.text),
                    embed_input=full,
                )
            )
        if not chunks:
            raise IngestError(doc.origin, "contains no text")
        return PreparedDocument(doc, doc.checksum, detect_language(doc.text), chunks)

    def _valid(self, documents: list[SourceDocument], skipped: list[IngestError] | None) -> list[SourceDocument]:
        valid = []
        for doc in documents:
            try:
                self.validate(doc)
                valid.append(doc)
            except IngestError as exc:
                if skipped is None:
                    raise
                skipped.append(exc)
        return valid

    async def check_compatible(self) -> None:
        """Refuse to mix models or analysers: the corpus's vectors and the configured model's must be one
        space, and its lexical index must come from the configured Korean analyser. Also makes sure the
        model's dimension has its vector index on this backend."""
        await self.embedder.ready()
        async with self.store.engine.connect() as conn:
            row = (await conn.execute(text("SELECT model, dim FROM embeddings LIMIT 1"))).first()
            analyzer = await lexical_analyzer(conn)
        if row is not None and (row.model != self.embedder.name or row.dim != self.embedder.dim):
            raise EmbeddingMismatchError(
                f"the database holds {row.model} vectors (dim {row.dim}) but the configured model is "
                f"{self.embedder.name} (dim {self.embedder.dim}); run `dtrag reindex` first"
            )
        if analyzer is not None and analyzer != self.analyzer.korean:
            raise AnalyzerMismatchError(
                f"the lexical index was built with the {analyzer} Korean analyser but KOREAN_ANALYZER is "
                f"{self.analyzer.korean}; run `dtrag reindex` first"
            )
        if self.embedder.dim not in self._indexed_dims:
            await self.store.ensure_vector_index(self.embedder.dim)
            self._indexed_dims.add(self.embedder.dim)

    async def ingest(
        self,
        documents: Sequence[SourceDocument],
        batch_size: int = 64,
        on_progress: ProgressCallback | None = None,
        skip_invalid: bool = False,
    ) -> IngestReport:
        """Validate every new or changed document first (nothing is written if one is bad, unless
        `skip_invalid` leaves the bad ones out and lists them), then write in batches of `batch_size`
        documents, one transaction each.

        Three stages overlap, each a batch apart: chunking and lexical analysis (a thread), embedding
        (the provider: its own thread, or requests in flight to a server) and the database write. A
        crash loses at most the batches not yet committed; running the same ingest again skips every
        committed document by its checksum (and the passage cache, when set, has the rest's vectors)."""
        start = time.perf_counter()
        report = IngestReport()
        by_identity = {d.identity: d for d in documents}  # the same identity twice: the last one wins
        existing = await self._existing(set(by_identity))
        changed = [d for d in by_identity.values() if existing.get(d.identity, ("", "", 0))[1] != d.checksum]
        changed_ids = {d.identity for d in changed}
        for identity, (doc_id, _, chunk_count) in existing.items():
            if identity not in changed_ids:
                report.outcomes.append(DocumentOutcome(doc_id, identity, "unchanged", chunk_count))
        report.unchanged = len(by_identity) - len(changed)
        valid = self._valid(changed, report.skipped if skip_invalid else None)
        if valid:
            await self.check_compatible()
        done = report.unchanged

        def progress() -> None:
            if on_progress:
                on_progress(IngestProgress(done, report.chunks, report.tokens, time.perf_counter() - start))

        progress()
        batches = [valid[i : i + batch_size] for i in range(0, len(valid), batch_size)]
        prepared: asyncio.Queue[list[PreparedDocument] | None] = asyncio.Queue(maxsize=1)
        embedded: asyncio.Queue[list[PreparedDocument] | None] = asyncio.Queue(maxsize=1)

        # A failing stage ends its stream, so the batches finished before it are still written; the
        # failure is raised once the writer is done. A failing write stops everything (TaskGroup).
        failures: list[Exception] = []

        async def prepare_stage() -> None:
            try:
                for batch in batches:
                    await prepared.put(await asyncio.to_thread(self._prepare_batch, batch))
            except Exception as exc:
                failures.append(exc)
            await prepared.put(None)

        async def embed_stage() -> None:
            try:
                while (batch := await prepared.get()) is not None:
                    embed_start = time.perf_counter()
                    vectors = await self.embedder.embed_passages([c.embed_input for d in batch for c in d.chunks])
                    report.embed_seconds += time.perf_counter() - embed_start
                    position = 0
                    for d in batch:
                        d.vectors = vectors[position : position + len(d.chunks)]
                        position += len(d.chunks)
                    await embedded.put(batch)
            except Exception as exc:
                failures.append(exc)
                preparing.cancel()  # nothing it prepares from here on would be embedded
            await embedded.put(None)

        async def write_stage() -> None:
            nonlocal done
            while (batch := await embedded.get()) is not None:
                for outcome, d in zip(await self._write(batch), batch):
                    report.outcomes.append(outcome)
                    setattr(report, outcome.status, getattr(report, outcome.status) + 1)
                    if outcome.status != "unchanged":
                        report.chunks += outcome.chunks
                        report.tokens += sum(c.token_count for c in d.chunks)
                done += len(batch)
                progress()

        try:
            async with asyncio.TaskGroup() as stages:
                preparing = stages.create_task(prepare_stage())
                stages.create_task(embed_stage())
                stages.create_task(write_stage())
        except ExceptionGroup as failed:
            raise failed.exceptions[0] from None
        if failures:
            raise failures[0]
        report.documents = len(by_identity) - len(report.skipped)
        report.seconds = time.perf_counter() - start
        log.info(
            "ingested",
            extra={f"ingest_{k}": getattr(report, k) for k in ("documents", "created", "replaced", "unchanged", "chunks")}
            | {"ingest_tokens_per_s": round(report.tokens_per_second)},
        )
        return report

    def _prepare_batch(self, batch: list[SourceDocument]) -> list[PreparedDocument]:
        return [self.prepare(doc) for doc in batch]

    async def _existing(self, identities: set[str], conn: AsyncConnection | None = None,
                        ) -> dict[str, tuple[str, str, int]]:
        """identity → (document id, checksum, chunk count) of the documents already stored."""
        query = select(Document.external_id, Document.id, Document.checksum, Document.chunk_count).where(
            Document.external_id.in_(bindparam("ids", expanding=True))
        )
        ids = sorted(identities)
        found: dict[str, tuple[str, str, int]] = {}
        async with AsyncExitStack() as stack:
            if conn is None:
                conn = await stack.enter_async_context(self.store.engine.connect())
            for start in range(0, len(ids), 500):  # stay under bind-parameter limits
                for r in await conn.execute(query, {"ids": ids[start : start + 500]}):
                    found[r.external_id] = (r.id, r.checksum, r.chunk_count)
        return found

    # A concurrent writer may insert the same identity between our check and insert (PostgreSQL);
    # the retry re-reads and then sees it as existing.
    @retry(retry=retry_if_exception_type(IntegrityError), stop=stop_after_attempt(3), reraise=True)
    async def _write(self, batch: list[PreparedDocument]) -> list[DocumentOutcome]:
        outcomes: list[DocumentOutcome] = []
        async with write_transaction(self.store.engine) as conn:
            existing = await self._existing({d.source.identity for d in batch}, conn)
            for d in batch:
                identity = d.source.identity
                old_id, old_checksum, old_chunks = existing.get(identity, (None, None, 0))
                if old_checksum == d.checksum and old_id is not None:
                    outcomes.append(DocumentOutcome(old_id, identity, "unchanged", old_chunks))
                    continue
                if d.vectors is None:  # changed by another writer since we looked: embed now
                    d.vectors = await self.embedder.embed_passages([c.embed_input for c in d.chunks])
                doc_id = old_id or new_id()
                values = dict(
                    title=d.source.title,
                    source_url=d.source.source_url,
                    content_type=d.source.content_type,
                    checksum=d.checksum,
                    language=d.language,
                    taxonomy_path=d.source.taxonomy_path,
                    metadata_=d.source.metadata,
                    chunk_count=len(d.chunks),
                    token_count=sum(c.token_count for c in d.chunks),
                    updated_at=utcnow(),
                )
                if old_id:
                    await conn.execute(delete(Chunk).where(Chunk.document_id == old_id))
                    await conn.execute(update(Document).where(Document.id == old_id).values(**values))
                else:
                    await conn.execute(
                        insert(Document).values(id=doc_id, external_id=identity, created_at=utcnow(), **values)
                    )
                await self._write_chunks(conn, doc_id, d)
                outcomes.append(DocumentOutcome(doc_id, identity, "replaced" if old_id else "created", len(d.chunks)))
            if any(o.status != "unchanged" for o in outcomes):
                await claim_lexical_analyzer(conn, self.analyzer.korean)
                await bump_generation(conn)
        return outcomes

    async def delete(self, document_id: str) -> bool:
        """Delete a document; chunks, vectors and postings go with it by cascade."""
        async with write_transaction(self.store.engine) as conn:
            deleted = (await conn.execute(delete(Document).where(Document.id == document_id))).rowcount
            if deleted:
                await bump_generation(conn)
        return bool(deleted)

    async def _write_chunks(self, conn: AsyncConnection, doc_id: str, d: PreparedDocument) -> None:
        rows = [
            dict(
                document_id=doc_id,
                ordinal=i,
                text=c.text,
                token_count=c.token_count,
                lexical=" ".join(c.tokens),
                lexical_length=len(c.tokens),
                language=c.language,
            )
            for i, c in enumerate(d.chunks)
        ]
        result = await conn.execute(
            insert(Chunk).returning(Chunk.id, Chunk.ordinal, sort_by_parameter_order=True), rows
        )
        ids = [r.id for r in result]
        assert d.vectors is not None
        await conn.execute(
            insert(Embedding),
            [
                dict(chunk_id=cid, model=self.embedder.name, dim=self.embedder.dim, vector=self.store.encode_vector(v))
                for cid, v in zip(ids, d.vectors)
            ],
        )
        await self.store.index_chunks(conn, [(cid, c.tokens) for cid, c in zip(ids, d.chunks)])

    async def reanalyse(self, page_size: int = 256) -> int:
        """Rebuild the lexical index with the configured Korean analyser when the corpus was built with
        another, a page per transaction; the analyser is recorded once every chunk is done, so an
        interrupted run starts over (cheap next to embedding)."""
        async with self.store.engine.connect() as conn:
            if await lexical_analyzer(conn) in (None, self.analyzer.korean):
                return 0
        done, last_id = 0, -1
        while True:
            async with self.store.engine.connect() as conn:
                page = (await conn.execute(text(
                    "SELECT c.id, c.text, d.title FROM chunks c JOIN documents d ON d.id = c.document_id "
                    "WHERE c.id > :last ORDER BY c.id LIMIT :n"), {"last": last_id, "n": page_size})).all()
            if not page:
                break
            tokens = await asyncio.to_thread(self._analyse_rows, page)
            async with write_transaction(self.store.engine) as conn:
                await self.store.replace_lexical(conn, [(r.id, t) for r, t in zip(page, tokens)])
            done += len(page)
            last_id = page[-1].id
        async with write_transaction(self.store.engine) as conn:
            await claim_lexical_analyzer(conn, self.analyzer.korean, force=True)
            await bump_generation(conn)
        return done

    def _analyse_rows(self, rows: Sequence) -> list[tuple[str, ...]]:
        return [self.analyzer.tokens(embed_input(r.title, r.text)) for r in rows]

    async def reindex(self, page_size: int = 256, on_progress: Callable[[int, int], None] | None = None) -> int:
        """Re-embed every chunk with the configured model, a page per transaction.

        Chunks whose vector is already from this model are skipped, so an interrupted reindex resumes.
        """
        await self.embedder.ready()
        await self.reanalyse()
        await self.store.ensure_vector_index(self.embedder.dim)
        pending = (
            "FROM chunks c JOIN documents d ON d.id = c.document_id LEFT JOIN embeddings e ON e.chunk_id = c.id "
            "WHERE (e.chunk_id IS NULL OR e.model <> :model OR e.dim <> :dim)"
        )
        params = {"model": self.embedder.name, "dim": self.embedder.dim}
        async with self.store.engine.connect() as conn:
            total = (await conn.execute(text(f"SELECT count(*) {pending}"), params)).scalar_one()
        done, last_id = 0, -1
        while True:
            async with self.store.engine.connect() as conn:
                page = (
                    await conn.execute(
                        text(f"SELECT c.id, c.text, d.title {pending} AND c.id > :last ORDER BY c.id LIMIT :n"),
                        {**params, "last": last_id, "n": page_size},
                    )
                ).all()
            if not page:
                return done
            vectors = await self.embedder.embed_passages([embed_input(r.title, r.text) for r in page])
            async with write_transaction(self.store.engine) as conn:
                ids = [r.id for r in page]
                await conn.execute(delete(Embedding).where(Embedding.chunk_id.in_(ids)))
                await conn.execute(
                    insert(Embedding),
                    [
                        dict(chunk_id=r.id, model=self.embedder.name, dim=self.embedder.dim,
                             vector=self.store.encode_vector(v))
                        for r, v in zip(page, vectors)
                    ],
                )
                await bump_generation(conn)
            done += len(page)
            last_id = page[-1].id
            if on_progress:
                on_progress(done, total)
