"""`dtrag flags`: list, check a context, set with a reason (audited), history."""

from __future__ import annotations

import getpass
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import typer
from rich.table import Table

from apps.cli.common import console, emit, fail, print_json, with_runtime
from apps.core.flags import FLAGS

flags_app = typer.Typer(help="Feature flags: state, per-user checks, audited overrides.", no_args_is_help=True)
T = TypeVar("T")


def _run(work: Callable[[Any], Awaitable[T]]) -> T:
    """`work` on the flag service, its overrides freshly read from the database."""
    async def fresh(runtime: Any) -> T:
        await runtime.flags.refresh(force=True)
        return await work(runtime.flags)

    return with_runtime(fresh)


@flags_app.command("list")
def flags_list(as_json: bool = typer.Option(False, "--json")) -> None:
    """Every flag with its state, source, rollout, allowlist size and last change."""
    async def work(service: Any) -> list[dict[str, Any]]:
        changes = await service.last_changes()
        return [{"name": name, "enabled": c.enabled, "kill": c.kill, "source": c.source, "rollout": c.rollout,
                 "allowlist": len(c.user_ids), "last_change": changes.get(name)}
                for name, c in service.configs().items()]

    emit(_run(work), as_json, _show, indent=2)


def _show(rows: list[dict[str, Any]]) -> None:
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
        fail("give --user-id or --job-id", 2)

    async def work(service: Any) -> dict[str, Any]:
        from apps.rollout.flags import FlagContext

        context = FlagContext(user_id=user_id, job_id=job_id)
        assignment = service.assign(context)
        return {"user_id": user_id, "job_id": job_id, "bucket": assignment.bucket,
                "pipeline_variant": assignment.variant, "flags": assignment.flags}

    print_json(_run(work), indent=2)


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
        fail(f"unknown flag {name!r}; known: {', '.join(FLAGS)}", 2)
    if on is None and rollout is None and users is None and kill is None:
        fail("give at least one of --on/--off, --rollout, --users, --kill/--unkill", 2)
    user_ids = [u.strip() for u in users.split(",") if u.strip()] if users is not None else None

    async def work(service: Any) -> dict[str, Any]:
        config = await service.set(name, actor=f"cli:{getpass.getuser()}", reason=reason, enabled=on,
                                   rollout=rollout, user_ids=user_ids, kill=kill)
        return {"name": name, **config.view()}

    print_json(_run(work))


@flags_app.command("history")
def flags_history(name: str, limit: int = typer.Option(20, min=1)) -> None:
    """Who changed a flag, when, from what to what, and why."""
    async def work(service: Any) -> list[dict[str, Any]]:
        return await service.history(name, limit)

    print_json(_run(work), indent=2)
