"""`dtrag flags`: list, check a context, set with a reason (audited), history."""

from __future__ import annotations

import getpass
import json
from typing import Any

import typer
from rich.table import Table

from apps.cli.common import console, err, run
from apps.core.config import get_settings
from apps.core.flags import FLAGS

flags_app = typer.Typer(help="Feature flags: state, per-user checks, audited overrides.", no_args_is_help=True)


def _run(work):
    from apps.core.db import create_engine
    from apps.rollout.flags import FlagService

    async def main() -> Any:
        engine = create_engine(get_settings())
        try:
            service = FlagService(engine)
            await service.refresh(force=True)
            return await work(service)
        finally:
            await engine.dispose()

    return run(main())


@flags_app.command("list")
def flags_list(as_json: bool = typer.Option(False, "--json")) -> None:
    """Every flag with its state, source, rollout, allowlist size and last change."""
    async def work(service: Any) -> list[dict[str, Any]]:
        changes = await service.last_changes()
        return [{"name": name, "enabled": c.enabled, "kill": c.kill, "source": c.source, "rollout": c.rollout,
                 "allowlist": len(c.user_ids), "last_change": changes.get(name)}
                for name, c in service.configs().items()]

    rows = _run(work)
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    table = Table("flag", "enabled", "rollout", "allowlist", "kill", "source", "last change")
    for r in rows:
        change = r["last_change"]
        table.add_row(r["name"], str(r["enabled"]), f"{r['rollout']:.2%}", str(r["allowlist"]), str(r["kill"]),
                      r["source"], f"{change['at']} by {change['actor']}: {change['reason']}" if change else "")
    console.print(table)


@flags_app.command("check")
def flags_check(user_id: str | None = typer.Option(None, "--user-id"),
                job_id: str | None = typer.Option(None, "--job-id")) -> None:
    """Which flags are on for a user (or job), its bucket and its pipeline variant."""
    if not user_id and not job_id:
        err.print("[red]error:[/red] give --user-id or --job-id")
        raise typer.Exit(2)

    async def work(service: Any) -> dict[str, Any]:
        from apps.rollout.flags import FlagContext

        context = FlagContext(user_id=user_id, job_id=job_id)
        assignment = service.assign(context)
        return {"user_id": user_id, "job_id": job_id, "bucket": assignment.bucket,
                "pipeline_variant": assignment.variant, "flags": assignment.flags}

    print(json.dumps(_run(work), indent=2))


@flags_app.command("set")
def flags_set(
    name: str,
    on: bool | None = typer.Option(None, "--on/--off", help="enable or disable"),
    rollout: float | None = typer.Option(None, help="a fraction: 0.1 = 10 %"),
    users: str | None = typer.Option(None, help="allowlist, comma-separated (empty string clears it)"),
    kill: bool | None = typer.Option(None, "--kill/--unkill", help="kill switch"),
    reason: str = typer.Option(..., help="why: recorded in the audit trail"),
) -> None:
    """Override a flag at runtime; every worker applies it within two seconds."""
    if name not in FLAGS:
        err.print(f"[red]error:[/red] unknown flag {name!r}; known: {', '.join(FLAGS)}")
        raise typer.Exit(2)
    if on is None and rollout is None and users is None and kill is None:
        err.print("[red]error:[/red] give at least one of --on/--off, --rollout, --users, --kill/--unkill")
        raise typer.Exit(2)
    user_ids = [u.strip() for u in users.split(",") if u.strip()] if users is not None else None

    async def work(service: Any) -> dict[str, Any]:
        config = await service.set(name, actor=f"cli:{getpass.getuser()}", reason=reason, enabled=on,
                                   rollout=rollout, user_ids=user_ids, kill=kill)
        return {"name": name, **config.view()}

    print(json.dumps(_run(work)))


@flags_app.command("history")
def flags_history(name: str, limit: int = typer.Option(20, min=1)) -> None:
    """Who changed a flag, when, from what to what, and why."""
    async def work(service: Any) -> list[dict[str, Any]]:
        return await service.history(name, limit)

    print(json.dumps(_run(work), indent=2))


def bench_rollout_cmd(
    drill: bool = typer.Option(True, help="also run the canary drill against real servers"),
    interval: float = typer.Option(5.0, min=1, help="canary evaluation interval for the drill, seconds"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Bucketing accuracy and stickiness for 100,000 users, evaluation cost, and a canary drill."""
    from apps.bench.rollout import bench_rollout

    result = bench_rollout(get_settings(), drill=drill, interval=interval)
    if as_json:
        print(json.dumps(result))
        return
    b = result["bucketing"]
    console.print(f"[bold]bucketing[/bold] {b['users']:,} users: observed share {b['observed_share_percent']}; "
                  f"same variant in two processes with different PYTHONHASHSEED: "
                  f"{b['same_variant_across_processes_percent']}%; ramp 10→50 %: {b['ramp_10_to_50_moved_out']} moved "
                  f"out, {b['ramp_10_to_50_added']} added; evaluation p50/p99 {b['evaluation_us']['p50']}/"
                  f"{b['evaluation_us']['p99']} µs")
    for name, s in result.get("canary_drill", {}).items():
        console.print(f"[bold]drill {name}[/bold]: requests {s['requests']}, verdicts {s['verdicts']}, "
                      f"rolled back: {s['rolled_back']}"
                      + (f" {s['seconds_from_first_error_to_rollback']} s after the first error "
                         f"(interval {s['interval_s']} s)" if s["rolled_back"] else ""))
