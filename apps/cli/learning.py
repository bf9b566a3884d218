"""`dtrag qtable | replay | bandit`: inspect and drive the learning state offline, and `bench bandit`."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from apps.cli.common import console, err, run
from apps.core.config import get_settings, load_settings

qtable_app = typer.Typer(help="Inspect the shared Q-table.", no_args_is_help=True)
replay_app = typer.Typer(help="Inspect the experience replay buffer.", no_args_is_help=True)
bandit_app = typer.Typer(help="Run learning and off-policy evaluation.", no_args_is_help=True)



def _run(work):
    from apps.runtime import build_runtime

    async def main() -> Any:
        runtime = build_runtime(get_settings())
        try:
            await runtime.bandit.learner.refresh(force=True)
            return await work(runtime)
        finally:
            await runtime.close()

    return run(main())


def _rows(learner: Any, state: str | None = None) -> list[dict[str, Any]]:
    states = [state] if state else sorted(learner.q_table)
    rows = []
    for s in states:
        stats = learner.stats(s)
        q = learner.get_q_values(s)
        rows.append({"state": s, "visits": learner.visits(s), "greedy": learner.greedy(s),
                     "q": dict(zip(learner.arms, (round(x, 4) for x in q))),
                     "updates": dict(zip(learner.arms, (st.updates if st else 0 for st in stats))),
                     "probabilities": dict(zip(learner.arms, (round(p, 4) for p in learner.probabilities(s))))})
    return rows


def _table(rows: list[dict[str, Any]], arms: tuple[str, ...]) -> Table:
    table = Table("state", "visits", "greedy", *(f"Q {a} (n)" for a in arms))
    for r in rows:
        table.add_row(r["state"], str(r["visits"]), r["greedy"], *(f"{r['q'][a]:.4f} ({r['updates'][a]})" for a in arms))
    return table


@qtable_app.command("stats")
def qtable_stats() -> None:
    """States, visits, policy version, and how often each arm is the greedy choice."""
    async def work(runtime: Any) -> dict[str, Any]:
        learner = runtime.bandit.learner
        rows = _rows(learner)
        greedy: dict[str, int] = {}
        for r in rows:
            greedy[r["greedy"]] = greedy.get(r["greedy"], 0) + 1
        return {"states": len(rows), "arms": list(learner.arms), "policy_version": learner.version,
                "updates": sum(r["visits"] for r in rows), "greedy_arm_counts": greedy}

    print(json.dumps(_run(work), indent=2))


@qtable_app.command("show")
def qtable_show(state: str | None = typer.Option(None, "--state", help="one state key")) -> None:
    """Q-values, update counts and greedy arm per state."""
    async def work(runtime: Any) -> tuple[list[dict[str, Any]], tuple[str, ...]]:
        return _rows(runtime.bandit.learner, state), runtime.bandit.learner.arms

    rows, arms = _run(work)
    console.print(_table(rows, arms))


@qtable_app.command("top")
def qtable_top(n: int = typer.Option(10, "-n", min=1, help="how many states")) -> None:
    """The most visited states."""
    async def work(runtime: Any) -> tuple[list[dict[str, Any]], tuple[str, ...]]:
        return _rows(runtime.bandit.learner), runtime.bandit.learner.arms

    rows, arms = _run(work)
    console.print(_table(sorted(rows, key=lambda r: -r["visits"])[:n], arms))


@qtable_app.command("export")
def qtable_export(fmt: str = typer.Option("json", "--format", help="csv | json")) -> None:
    """The whole Q-table on stdout."""
    if fmt not in ("csv", "json"):
        err.print("[red]error:[/red] --format must be csv or json")
        raise typer.Exit(2)

    async def work(runtime: Any) -> list[dict[str, Any]]:
        return _rows(runtime.bandit.learner)

    rows = _run(work)
    if fmt == "json":
        print(json.dumps(rows, indent=2))
        return
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["state", "action", "q", "updates", "probability", "greedy"])
    for r in rows:
        for arm, q in r["q"].items():
            writer.writerow([r["state"], arm, q, r["updates"][arm], r["probabilities"][arm], r["greedy"] == arm])
    sys.stdout.write(out.getvalue())


@replay_app.command("stats")
def replay_stats() -> None:
    """Size, capacity, age range, per-arm counts and mean reward, bytes on disk."""
    async def work(runtime: Any) -> dict[str, Any]:
        return await runtime.bandit.replay.stats()

    print(json.dumps(_run(work), indent=2))


@bandit_app.command("learn")
def bandit_learn(batches: int = typer.Option(1, min=1, help="batch updates to run"),
                 settle: bool = typer.Option(True, help="first turn expired decisions into experiences"),
                 run_async: bool = typer.Option(False, "--async", help="run as a job and return its id")) -> None:
    """Batch updates from the replay buffer now (the service also runs them every N experiences)."""
    if run_async:
        from apps.cli.jobs import submit

        submit("learn", params={"batches": batches, "settle": settle}, total=batches)
        return
    async def work(runtime: Any) -> dict[str, Any]:
        settled = await runtime.bandit.settle() if settle else 0
        await runtime.bandit.drain()
        applied = await runtime.bandit.learn(batches)
        await runtime.bandit.learner.refresh(force=True)
        return {"settled": settled, "applied": applied, "policy_version": runtime.bandit.learner.version}

    print(json.dumps(_run(work)))


@bandit_app.command("ope")
def bandit_ope(
    policy: str = typer.Option("greedy", help="greedy | current: the candidate policy to evaluate"),
    since: datetime | None = typer.Option(None, help="only decisions from this time (ISO 8601)"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Off-policy value of a candidate policy from the decision log: IPS, SNIPS, DR with 95 % intervals."""
    from apps.orchestration.src.bandit import ope

    if policy not in ope.POLICIES:
        err.print("[red]error:[/red] --policy must be greedy or current")
        raise typer.Exit(2)

    async def work(runtime: Any) -> dict[str, Any]:
        when = since.astimezone() if since and since.tzinfo is None else since
        return await ope.evaluate_log(runtime.bandit.decisions, runtime.bandit.learner, policy, since=when)

    result = _run(work)
    if as_json or not result.get("n"):
        print(json.dumps(result, indent=2))
        return
    table = Table("estimator", "value", "95 % interval")
    for name in ("ips", "snips", "dr"):
        table.add_row(name.upper(), f"{result[name]['value']:.4f}",
                      f"[{result[name]['ci95'][0]:.4f}, {result[name]['ci95'][1]:.4f}]")
    console.print(f"policy={policy} logged decisions={result['n']} effective sample size={result['ess']} "
                  f"logged mean reward={result['logged_mean_reward']}")
    console.print(table)


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
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from apps.bench.bandit import bench_bandit

    url = load_settings(database_url=database_url).database_url if database_url else None
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err) as progress:
        tasks: dict[str, Any] = {}

        def on_progress(phase: str, done: int, total: int) -> None:
            if phase not in tasks:
                tasks[phase] = progress.add_task(phase, total=total)
            progress.update(tasks[phase], completed=done)

        try:
            result = asyncio.run(bench_bandit(dataset, get_settings(), database_url=url, epochs=epochs, seed=seed,
                                              latency_cost=latency_cost, train_fraction=train_fraction,
                                              on_progress=on_progress))
        except FileNotFoundError as exc:
            err.print(f"[red]error:[/red] {exc}")
            raise typer.Exit(1) from None
    if as_json:
        print(json.dumps(result))
        return
    _print_bench(result)


def _print_bench(r: dict[str, Any]) -> None:
    console.print(f"[bold]{r['dataset']}[/bold] backend={r['backend']} train={r['train_split']} "
                  f"({r['train_queries']} queries × {r['epochs']} epochs) test={r['test_queries']} queries "
                  f"λ={r['latency_cost']} ms⁻¹")
    table = Table("policy", "nDCG@10", "mean ms")
    table.add_row("learned (greedy)", f"{r['learned']['ndcg@10']:.4f}", f"{r['learned']['mean_ms']:.1f}")
    for name, m in r["fixed"].items():
        mark = " (best)" if name == r["best_fixed"] else ""
        mark += " (default)" if name == r["default"] else ""
        table.add_row(f"fixed {name}{mark}", f"{m['ndcg@10']:.4f}", f"{m['mean_ms']:.1f}")
    table.add_row("uniform random", f"{r['random']['ndcg@10']:.4f}", f"{r['random']['mean_ms']:.1f}")
    table.add_row("per-query oracle", f"{r['oracle']['ndcg@10']:.4f}", f"{r['oracle']['mean_ms']:.1f}")
    console.print(table)
    c = r["comparison"]
    console.print(f"learned − best fixed: {c['learned_minus_best_fixed']:+.4f}; learned − default: "
                  f"{c['learned_minus_default']:+.4f}; latency ratio to best fixed: {c['latency_ratio_to_best_fixed']}"
                  f"; learned choices: {r['learned']['choices']}")
    curve = Table("epoch", "train mean reward", "test nDCG@10", "test mean ms", "policy version")
    for p in r["learning_curve"]:
        curve.add_row(str(p["epoch"]), f"{p['train_mean_reward']:.4f}", f"{p['test_ndcg@10']:.4f}",
                      f"{p['test_mean_ms']:.1f}", str(p["policy_version"]))
    console.print(curve)
    o = r["ope"]
    console.print(f"OPE of the greedy policy from {o['n']} logged decisions (ESS {o['ess']}): "
                  + ", ".join(f"{k.upper()} {o[k]['value']:.4f} [{o[k]['ci95'][0]:.4f}, {o[k]['ci95'][1]:.4f}]"
                              for k in ("ips", "snips", "dr"))
                  + f"; measured on the logged (train) queries: {o['measured_train_reward']:.4f}, "
                    f"on test: {o['measured_test_reward']:.4f}")
    q = r["q_table"]
    console.print(f"Q-table: {q['states']} states; policy overhead p50/p95 {r['policy_overhead']['p50_ms']}/"
                  f"{r['policy_overhead']['p95_ms']} ms; full replay buffer {r['replay_buffer_full']['entries']} "
                  f"entries = {r['replay_buffer_full']['bytes']} bytes")
    top = Table("state", "visits", "greedy", *(f"Q {a}" for a in q["arms"]))
    for s in q["top_states"]:
        top.add_row(s["state"], str(s["visits"]), s["greedy"], *(f"{x:.4f}" for x in s["q"]))
    console.print(top)
