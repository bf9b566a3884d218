"""`dtrag qtable | replay | bandit`: inspect and drive the learning state offline."""

from __future__ import annotations

import csv
import io
import sys
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, TypeVar

import typer
from rich.table import Table

from apps.cli.common import console, emit, fail, print_json, with_runtime

qtable_app = typer.Typer(help="Inspect the shared Q-table.", no_args_is_help=True)
replay_app = typer.Typer(help="Inspect the experience replay buffer.", no_args_is_help=True)
bandit_app = typer.Typer(help="Run learning and off-policy evaluation.", no_args_is_help=True)
T = TypeVar("T")


def _run(work: Callable[[Any], Awaitable[T]]) -> T:
    """`work` on a runtime whose learner holds the stored Q-table."""
    async def fresh(runtime: Any) -> T:
        await runtime.bandit.learner.refresh(force=True)
        return await work(runtime)

    return with_runtime(fresh)


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


def _show(rows: list[dict[str, Any]], arms: tuple[str, ...]) -> None:
    table = Table("state", "visits", "greedy", *(f"Q {a} (n)" for a in arms))
    for r in rows:
        table.add_row(r["state"], str(r["visits"]), r["greedy"], *(f"{r['q'][a]:.4f} ({r['updates'][a]})" for a in arms))
    console.print(table)


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

    print_json(_run(work), indent=2)


@qtable_app.command("show")
def qtable_show(state: str | None = typer.Option(None, "--state", help="one state key"),
                as_json: bool = typer.Option(False, "--json", help="print the rows as JSON")) -> None:
    """Q-values, update counts and greedy arm per state."""
    async def work(runtime: Any) -> tuple[list[dict[str, Any]], tuple[str, ...]]:
        return _rows(runtime.bandit.learner, state), runtime.bandit.learner.arms

    rows, arms = _run(work)
    emit(rows, as_json, lambda r: _show(r, arms), indent=2)


@qtable_app.command("top")
def qtable_top(n: int = typer.Option(10, "-n", min=1, help="how many states"),
               as_json: bool = typer.Option(False, "--json", help="print the rows as JSON")) -> None:
    """The most visited states."""
    async def work(runtime: Any) -> tuple[list[dict[str, Any]], tuple[str, ...]]:
        return _rows(runtime.bandit.learner), runtime.bandit.learner.arms

    rows, arms = _run(work)
    emit(sorted(rows, key=lambda r: -r["visits"])[:n], as_json, lambda r: _show(r, arms), indent=2)


@qtable_app.command("export")
def qtable_export(fmt: str = typer.Option("json", "--format", help="csv | json")) -> None:
    """The whole Q-table on stdout."""
    if fmt not in ("csv", "json"):
        fail("--format must be csv or json", 2)

    async def work(runtime: Any) -> list[dict[str, Any]]:
        return _rows(runtime.bandit.learner)

    rows = _run(work)
    if fmt == "json":
        print_json(rows, indent=2)
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

    print_json(_run(work), indent=2)


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

    print_json(_run(work))


@bandit_app.command("ope")
def bandit_ope(
    policy: str = typer.Option("greedy", help="greedy | current: the candidate policy to evaluate"),
    since: datetime | None = typer.Option(None, help="only decisions from this time (ISO 8601)"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Off-policy value of a candidate policy from the decision log: IPS, SNIPS, DR with 95 % intervals."""
    from apps.orchestration.src.bandit import ope

    if policy not in ope.POLICIES:
        fail("--policy must be greedy or current", 2)

    async def work(runtime: Any) -> dict[str, Any]:
        when = since.astimezone() if since and since.tzinfo is None else since
        return await ope.evaluate_log(runtime.bandit.decisions, runtime.bandit.learner, policy, since=when)

    result = _run(work)
    emit(result, as_json or not result.get("n"), lambda r: _show_ope(policy, r), indent=2)


def _show_ope(policy: str, result: dict[str, Any]) -> None:
    table = Table("estimator", "value", "95 % interval")
    for name in ("ips", "snips", "dr"):
        table.add_row(name.upper(), f"{result[name]['value']:.4f}",
                      f"[{result[name]['ci95'][0]:.4f}, {result[name]['ci95'][1]:.4f}]")
    console.print(f"policy={policy} logged decisions={result['n']} effective sample size={result['ess']} "
                  f"logged mean reward={result['logged_mean_reward']}")
    console.print(table)
