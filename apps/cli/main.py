"""`dtrag`: the operator's command line. This module wires the command groups together and holds the
everyday commands (serve, ingest, reindex, answer, db); the groups live beside it, one module each."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from typing import Any

import typer
from rich.table import Table

from apps.cli import cases, doors, flags, ingest, jobs, keys, learning, models
from apps.cli.bench import bench_app
from apps.cli.common import console, emit, err, fail, run, with_runtime
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
app.add_typer(cases.cases_app, name="cases")
doors.register(app)
app.command("worker")(jobs.worker)
app.command("ingest")(ingest.ingest)
app.command("reindex")(ingest.reindex)


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
    cases = r.get("cases")
    table = Table("#", "title", "chunk", "snippet", *(["from cases"] if cases is not None else []))
    for i, source in enumerate(r["sources"], start=1):
        table.add_row(str(i), source["title"], str(source["chunk_id"]), source["snippet"][:80],
                      *([",".join(map(str, source.get("case_ids") or [])) or "-"] if cases is not None else []))
    console.print(table)
    if cases is not None:
        console.print(f"cases: {len(cases['case_ids'])} close past questions, ranking "
                      f"{'changed' if cases['changed'] else 'unchanged'}, selector version "
                      f"{cases['selector_version'] if cases['selector_version'] is not None else '-'}"
                      f"{' (fixed rule)' if cases['rule'] else ''}")
    timings = ", ".join(f"{k} {v:.0f} ms" for k, v in r["timings_ms"].items())
    console.print(f"model {r['model']} | strategy {r['strategy']} | grounded "
                  f"{r['validation']['grounded']} | degraded {r['degraded']} | {timings}")
    if (d := r["debate"]) is not None:
        console.print(f"debate: {d['rounds']} rounds, {d['llm_calls']} LLM calls, stopped by {d['stop_reason']}, "
                      f"agreement {d['agreement']:.2f}, conflict {d['conflict']}, fell back {d['fell_back']}")


if __name__ == "__main__":
    app()
