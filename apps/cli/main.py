"""`dtrag`: the operator's command line."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from apps.core.config import SettingsError, get_settings, load_settings

app = typer.Typer(help="DT-RAG: retrieval-augmented answers from your own documents.", no_args_is_help=True)
bench_app = typer.Typer(help="Benchmarks that print numbers.", no_args_is_help=True)
db_app = typer.Typer(help="Database migrations.", no_args_is_help=True)
app.add_typer(bench_app, name="bench")
app.add_typer(db_app, name="db")

console = Console()
err = Console(stderr=True)


def _fail(message: str) -> None:
    err.print(f"[red]error:[/red] {message}")
    raise typer.Exit(1)


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[chunks]} chunks"),
        TimeElapsedColumn(), TimeRemainingColumn(), console=err, transient=False,
    )


@app.callback()
def _main() -> None:
    try:
        get_settings()
    except SettingsError as exc:
        _fail(str(exc))


@db_app.command("upgrade")
def db_upgrade(revision: str = "head") -> None:
    """Apply migrations up to REVISION (default: head)."""
    from apps.core.migrations import upgrade

    upgrade(get_settings().database_url, revision)


@db_app.command("downgrade")
def db_downgrade(revision: str = "-1") -> None:
    """Revert migrations down to REVISION (default: one step)."""
    from apps.core.migrations import downgrade

    downgrade(get_settings().database_url, revision)


@app.command()
def ingest(
    paths: list[Path] = typer.Argument(..., help="Files or folders (.txt .md .html .pdf, BEIR .jsonl)"),
    taxonomy: str = typer.Option("", help="Taxonomy path for these documents, e.g. 'ai/ml'"),
) -> None:
    """Ingest files: chunk, analyse, embed, store. Nothing is written if any file is bad."""
    from apps.ingestion.errors import EmbeddingMismatchError, IngestError
    from apps.ingestion.loaders import iter_paths, load_file
    from apps.runtime import build_runtime

    settings = get_settings()
    documents = []
    try:
        for path in iter_paths(list(paths)):
            for doc in load_file(path, settings.max_document_bytes):
                if taxonomy:
                    doc.taxonomy_path = "/".join(s for s in taxonomy.split("/") if s)
                documents.append(doc)
    except IngestError as exc:
        _fail(f"{exc} (nothing was ingested)")
    if not documents:
        _fail("no supported files found")

    async def run() -> None:
        runtime = build_runtime(settings)
        try:
            with _progress() as progress:
                task = progress.add_task("ingesting", total=len(documents), chunks=0)
                report = await runtime.ingestion.ingest(
                    documents, on_progress=lambda d, c: progress.update(task, completed=d, chunks=c)
                )
        finally:
            await runtime.close()
        table = Table("documents", "created", "replaced", "unchanged", "chunks", "seconds", "docs/s", "tokens/s")
        table.add_row(
            str(report.documents), str(report.created), str(report.replaced), str(report.unchanged),
            str(report.chunks), f"{report.seconds:.1f}", f"{report.docs_per_second:.1f}", f"{report.tokens_per_second:.0f}",
        )
        console.print(table)

    try:
        asyncio.run(run())
    except (IngestError, EmbeddingMismatchError) as exc:
        _fail(f"{exc} (nothing was ingested)")


@app.command()
def reindex() -> None:
    """Re-embed every chunk with the configured embedding model."""
    from apps.runtime import build_runtime

    async def run() -> None:
        runtime = build_runtime(get_settings())
        try:
            with _progress() as progress:
                task = progress.add_task("re-embedding", total=None, chunks=0)

                def update(done: int, total: int) -> None:
                    progress.update(task, completed=done, total=total, chunks=done)

                count = await runtime.ingestion.reindex(on_progress=update)
        finally:
            await runtime.close()
        console.print(f"re-embedded {count} chunks with {runtime.ingestion.embedder.name}")

    asyncio.run(run())


@bench_app.command("retrieval")
def bench_retrieval_cmd(
    dataset: Path = typer.Option(..., help="BEIR dataset folder, e.g. ../shared/data/scifact"),
    split: str = typer.Option("test", help="qrels split to evaluate"),
    strategies: str = typer.Option("bm25,dense,hybrid_rrf,hybrid_cc", help="comma-separated strategy names"),
    database_url: str | None = typer.Option(None, help="default: a cached SQLite file per dataset"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
) -> None:
    """Retrieval quality (nDCG@10, Recall@100, MAP@100, MRR@10) and latency per strategy."""
    from apps.bench.beir import load_dataset
    from apps.bench.retrieval import bench_retrieval, bench_settings, default_database_url

    try:
        data = load_dataset(dataset, split)
    except FileNotFoundError as exc:
        _fail(str(exc))
    base = get_settings()
    settings = bench_settings(base, load_settings(database_url=database_url).database_url if database_url
                              else default_database_url(data))
    names = [s.strip() for s in strategies.split(",") if s.strip()]

    with _progress() as progress:
        task = progress.add_task(f"ingesting {data.name}", total=None, chunks=0)
        result = asyncio.run(
            bench_retrieval(data, names, settings, on_progress=lambda d, c: progress.update(task, completed=d, chunks=c))
        )
    if as_json:
        print(json.dumps(result))
        return
    ing = result["ingest"]
    speed = "reused" if ing["reused"] else f"{ing['docs_per_s']} docs/s, {ing['tokens_per_s']} tokens/s"
    console.print(
        f"[bold]{result['dataset']}[/bold] split={result['split']} queries={result['queries']} "
        f"backend={result['backend']}; ingest: {ing['docs']} docs ({speed}) in {ing['seconds']} s"
    )
    table = Table("strategy", "nDCG@10", "Recall@100", "MAP@100", "MRR@10", "p50 ms", "p95 ms", "p99 ms")
    for name, m in result["strategies"].items():
        table.add_row(name, *(f"{m[k]:.4f}" for k in ("ndcg@10", "recall@100", "map@100", "mrr@10")),
                      *(f"{m[k]:.1f}" for k in ("p50_ms", "p95_ms", "p99_ms")))
    console.print(table)


if __name__ == "__main__":
    app()
