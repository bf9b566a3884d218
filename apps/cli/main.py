"""`dtrag`: the operator's command line. This module wires the command groups together and holds the
everyday commands (serve, ingest, reindex, answer, db); the groups live beside it, one module each."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from apps.cli import doors, flags, jobs, keys, learning, models
from apps.cli.bench import bench_app
from apps.cli.common import console, emit, err, fail, progress, run, with_runtime
from apps.core.config import Settings, SettingsError, get_settings

app = typer.Typer(help="DT-RAG: retrieval-augmented answers from your own documents.", no_args_is_help=True)
db_app = typer.Typer(help="Database migrations.", no_args_is_help=True)
app.add_typer(bench_app, name="bench")
app.add_typer(db_app, name="db")
app.add_typer(keys.keys_app, name="keys")
app.add_typer(learning.qtable_app, name="qtable")
app.add_typer(learning.replay_app, name="replay")
app.add_typer(learning.bandit_app, name="bandit")
app.add_typer(flags.flags_app, name="flags")
app.add_typer(jobs.jobs_app, name="jobs")
app.add_typer(models.models_app, name="models")
doors.register(app)
app.command("worker")(jobs.worker)


@app.callback()
def _main() -> None:
    try:
        get_settings()
    except SettingsError as exc:
        fail(str(exc))


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


@app.command()
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


async def _first_run_setup(settings: Settings, base_url: str) -> None:
    """Seed the sample corpus into an empty database and mint the first admin key."""
    from sqlalchemy import func, select

    from apps.core.api_keys import Scope
    from apps.core.models import Document
    from apps.runtime import build_runtime
    from apps.sample_corpus import sample_documents

    async with build_runtime(settings) as runtime:
        async with runtime.engine.connect() as conn:
            documents = (await conn.execute(select(func.count()).select_from(Document))).scalar_one()
        if documents == 0:
            samples = sample_documents()
            err.print(f"first run: ingesting {len(samples)} sample documents (English and Korean)...")
            report = await runtime.ingestion.ingest(samples)
            err.print(f"  {report.created} documents, {report.chunks} chunks in {report.seconds:.1f} s")
        if await runtime.keys.count_active_admins() == 0:
            _, plaintext = await runtime.keys.create(Scope.admin, name="first admin key")
            console.print(f"\n[bold]Admin API key (shown once, store it now):[/bold] {plaintext}\n")
            console.print(
                f"Try it:\n  curl -X POST {base_url}/api/v1/search/ -H \"Content-Type: application/json\" "
                f"-H \"X-API-Key: {plaintext}\" -d '{{\"q\":\"machine learning\",\"final_topk\":5}}'\n",
                soft_wrap=True,
            )


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", help="interface to bind"),
    port: int = typer.Option(8000, help="port to listen on"),
    workers: int = typer.Option(1, min=1, max=64, help="uvicorn worker processes"),
    init: bool = typer.Option(False, "--init", help="first run: seed the sample corpus, mint an admin key"),
) -> None:
    """Migrate the database and serve the HTTP API (uvicorn apps.api.main:app)."""
    import uvicorn

    from apps.core.migrations import upgrade

    settings = get_settings()
    upgrade(settings.database_url)
    if init:
        # A wildcard or loopback bind answers on localhost; another interface only on its own address.
        local = host in ("127.0.0.1", "::1", "localhost", "0.0.0.0", "::", "")
        reachable = "localhost" if local else f"[{host}]" if ":" in host else host
        run(_first_run_setup(settings, f"http://{reachable}:{port}"))
    if workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Each worker writes its metrics to files here; any worker's /metrics sums them all.
        metrics_dir = tempfile.mkdtemp(prefix="dtrag-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
        atexit.register(shutil.rmtree, metrics_dir, ignore_errors=True)
    # Under concurrent load one OpenMP thread per query embedding costs the least CPU, and sleeping
    # (not spinning) OpenMP threads leave the cores to the event loop and SQL threads: the fastest
    # serving setup measured (BENCHMARKS.md, query path). A lone query is faster with every core,
    # which is why in-process use (CLI, benches) keeps QUERY_EMBEDDING_THREADS=0.
    if not settings.query_embedding_threads:
        os.environ["QUERY_EMBEDDING_THREADS"] = "1"
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    # A worker is "ready" once it has loaded its models (seconds): uvicorn's default 5 s would abort a
    # graceful restart (SIGHUP, POST /api/admin/graceful-restart) whose new workers start slower.
    uvicorn.run("apps.api.main:app", host=host, port=port, workers=workers, log_level=settings.log_level.lower(),
                timeout_worker_healthcheck=120)


@app.command()
def answer(
    question: str = typer.Argument(..., help="the question, English or Korean"),
    mode: str = typer.Option("answer", help="answer | summary | keypoints | debate"),
    provider: str | None = typer.Option(None, help="extractive | openai | gemini | local (default from settings)"),
    top_k: int = typer.Option(5, min=1, max=20, help="chunks to compose from"),
    as_json: bool = typer.Option(False, "--json", help="print the answer as /answer's JSON body"),
) -> None:
    """Answer a question from the documents; prints the answer, its sources and timings."""
    from apps.llm.factory import ProviderUnavailableError
    from apps.orchestration.src.answer_models import AnswerRequest

    if mode not in ("answer", "summary", "keypoints", "debate"):
        fail("--mode must be answer, summary, keypoints or debate")
    request = AnswerRequest(question, mode=mode, top_k=top_k)  # type: ignore[arg-type]
    try:
        result = with_runtime(lambda rt: rt.pipelines.get(provider).execute(request))
    except ProviderUnavailableError as exc:
        fail(str(exc))
    emit(result.model_dump(mode="json"), as_json, _show_answer)


def _show_answer(r: dict[str, Any]) -> None:
    console.print(r["answer"], soft_wrap=True)
    console.print()
    table = Table("#", "title", "chunk", "snippet")
    for i, source in enumerate(r["sources"], start=1):
        table.add_row(str(i), source["title"], str(source["chunk_id"]), source["snippet"][:80])
    console.print(table)
    timings = ", ".join(f"{k} {v:.0f} ms" for k, v in r["timings_ms"].items())
    console.print(f"model {r['model']} | strategy {r['strategy']} | grounded "
                  f"{r['validation']['grounded']} | degraded {r['degraded']} | {timings}")
    if (d := r["debate"]) is not None:
        console.print(f"debate: {d['rounds']} rounds, {d['llm_calls']} LLM calls, stopped by {d['stop_reason']}, "
                      f"agreement {d['agreement']:.2f}, conflict {d['conflict']}, fell back {d['fell_back']}")


if __name__ == "__main__":
    app()
