"""`dtrag ingest` and `dtrag reindex`: documents into the corpus, and the corpus onto the configured
embedding model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from apps.cli import jobs
from apps.cli.common import console, emit, fail, progress, with_runtime
from apps.core.config import get_settings


def ingest(
    paths: list[Path] = typer.Argument(..., help="Files or folders (.txt .md .html .pdf, BEIR .jsonl)"),
    taxonomy: str = typer.Option("", help="Taxonomy path for these documents, e.g. 'ai/ml'"),
    collection: str = typer.Option("default", help="the collection they go to (created if missing); an "
                                                   "external id is unique within its collection"),
    access_groups: str = typer.Option("", "--access-groups",
                                      help="comma-separated groups: only keys carrying one see these documents"),
    skip_invalid: bool = typer.Option(False, "--skip-invalid",
                                      help="Leave out bad files and corpus lines (listed at the end) instead of "
                                           "refusing everything"),
    run_async: bool = typer.Option(False, "--async", help="store the documents as a job and return its id"),
    as_json: bool = typer.Option(False, "--json", help="print the summary as one JSON object"),
) -> None:
    """Ingest files: chunk, analyse, embed, store. Nothing is written if any file is bad (unless --skip-invalid)."""
    from apps.ingestion.documents import normalise_taxonomy
    from apps.ingestion.errors import EmbeddingMismatchError, IngestError
    from apps.ingestion.loaders import iter_paths, load_file

    settings = get_settings()
    documents = []
    skipped: list[IngestError] = []
    for path in iter_paths(list(paths)):
        try:
            loaded = load_file(path, settings.max_document_bytes, skipped if skip_invalid else None)
        except IngestError as exc:
            if not skip_invalid:
                fail(f"{exc} (nothing was ingested; --skip-invalid leaves bad files out)")
            skipped.append(exc)
            continue
        for doc in loaded:
            if taxonomy:
                doc.taxonomy_path = normalise_taxonomy(taxonomy)
            doc.collection = collection
            doc.access_groups = tuple(g.strip() for g in access_groups.split(",") if g.strip())
            documents.append(doc)
    if not documents and not skipped:
        fail("no supported files found")
    from apps.ingestion.collections import CollectionError

    if run_async:
        from apps.jobs.kinds import document_fields
        from apps.jobs.store import Payload

        try:
            with_runtime(lambda rt: rt.collections.ensure(collection))
        except CollectionError as exc:
            fail(str(exc))
        jobs.submit("ingest", payloads=[Payload(None, document_fields(d), None) for d in documents],
                    total=len(documents), params={"collections": [collection]})
        return

    async def work(runtime: Any) -> Any:
        await runtime.collections.ensure(collection)
        with progress() as bar:
            task = bar.add_task("ingesting", total=len(documents), chunks=0, rate="")
            return await runtime.ingestion.ingest(
                documents, on_progress=lambda p: bar.update(task, completed=p.documents, chunks=p.chunks,
                                                            rate=f"{p.tokens_per_second:,.0f} tokens/s"),
                skip_invalid=skip_invalid,
            )

    try:
        report = with_runtime(work)
    except (IngestError, EmbeddingMismatchError) as exc:
        fail(f"{exc} (nothing was ingested)")
    except CollectionError as exc:
        fail(str(exc))
    problems = [str(p) for p in [*skipped, *report.skipped]]
    summary = {"documents": report.documents, "created": report.created, "replaced": report.replaced,
               "unchanged": report.unchanged, "skipped": len(problems), "chunks": report.chunks,
               "seconds": report.seconds, "docs_per_s": report.docs_per_second,
               "tokens_per_s": report.tokens_per_second, "skipped_items": problems}
    emit(summary, as_json, _show_ingest)


def _show_ingest(s: dict[str, Any]) -> None:
    for problem in s["skipped_items"]:
        console.print(f"[yellow]skipped[/yellow] {problem}")
    table = Table("documents", "created", "replaced", "unchanged", "skipped", "chunks", "seconds", "docs/s", "tokens/s")
    table.add_row(*(str(s[k]) for k in ("documents", "created", "replaced", "unchanged", "skipped", "chunks")),
                  f"{s['seconds']:.1f}", f"{s['docs_per_s']:.1f}", f"{s['tokens_per_s']:.0f}")
    console.print(table)


def reindex(run_async: bool = typer.Option(False, "--async", help="run as a job and return its id")) -> None:
    """Re-embed every chunk with the configured embedding model."""
    if run_async:
        jobs.submit("reindex")
        return

    async def work(runtime: Any) -> tuple[int, str]:
        with progress() as bar:
            task = bar.add_task("re-embedding", total=None, chunks=0, rate="")

            def update(done: int, total: int) -> None:
                bar.update(task, completed=done, total=total, chunks=done)

            return await runtime.ingestion.reindex(on_progress=update), runtime.ingestion.embedder.name

    count, model = with_runtime(work)
    console.print(f"re-embedded {count} chunks with {model}")
