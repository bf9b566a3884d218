"""`dtrag worker` and `dtrag jobs list|show|retry|cancel`; `submit()` for the `--async` options."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from apps.core.config import get_settings

jobs_app = typer.Typer(help="Durable jobs: list, inspect, retry, cancel.", no_args_is_help=True)
console = Console()
err = Console(stderr=True)


def _run(work: Callable[[Any], Awaitable[Any]]) -> Any:
    from apps.runtime import build_runtime

    async def run() -> Any:
        runtime = build_runtime(get_settings())
        try:
            await runtime.flags.refresh(force=True)
            return await work(runtime)
        finally:
            await runtime.close()

    return asyncio.run(run())


def submit(kind: str, **kwargs: Any) -> None:
    """Accept a job and print it; an in-process job is left to a serving process's sweep."""
    async def work(runtime: Any) -> dict[str, Any]:
        submitted = await runtime.jobs.submit(kind, run_here=False, **kwargs)
        return await runtime.jobs.get(submitted.job["job_id"])

    job = _run(work)
    print(json.dumps({"job_id": job["job_id"], "status": job["status"], "mode": job["mode"],
                      "mode_reason": job["mode_reason"]}))


def worker(burst: bool = typer.Option(False, "--burst", help="exit once the queue is empty"),
           name: str | None = typer.Option(None, help="worker name (default: RQ's)")) -> None:
    """Run an RQ worker for DT-RAG's job queue (needs REDIS_URL)."""
    from apps.jobs.worker import run_worker

    if not get_settings().redis_url:
        err.print("[red]error:[/red] REDIS_URL is not set; without it jobs run inside `dtrag serve`")
        raise typer.Exit(1)
    run_worker(burst=burst, name=name)


@jobs_app.command("list")
def jobs_list(status: str | None = typer.Option(None, help="queued | running | succeeded | failed | cancelled | dead_letter"),
              limit: int = typer.Option(50, min=1, max=500), as_json: bool = typer.Option(False, "--json")) -> None:
    """Jobs, newest first."""
    jobs = _run(lambda rt: rt.jobs.list(status, limit))
    if as_json:
        print(json.dumps(jobs, indent=2))
        return
    table = Table("job", "kind", "status", "mode", "attempts", "progress", "created")
    for j in jobs:
        table.add_row(j["job_id"], j["kind"], j["status"], j["mode"], str(j["attempts"]),
                      f"{j['progress']['done']}/{j['progress']['total']}", j["created_at"])
    console.print(table)


@jobs_app.command("show")
def jobs_show(job_id: str) -> None:
    """One job as JSON."""
    job = _run(lambda rt: rt.jobs.get(job_id))
    if job is None:
        err.print(f"[red]error:[/red] no job {job_id}")
        raise typer.Exit(1)
    print(json.dumps(job, indent=2))


@jobs_app.command("retry")
def jobs_retry(job_id: str) -> None:
    """Run a failed, cancelled or dead-lettered job again."""
    async def work(runtime: Any) -> bool:
        return await runtime.jobs.retry(job_id)

    if not _run(work):
        err.print(f"[red]error:[/red] job {job_id} is not failed, cancelled or dead-lettered")
        raise typer.Exit(1)
    console.print(f"job {job_id} queued again")


@jobs_app.command("cancel")
def jobs_cancel(job_id: str) -> None:
    """Cancel a queued or running job."""
    if not _run(lambda rt: rt.jobs.cancel(job_id)):
        err.print(f"[red]error:[/red] job {job_id} is not queued or running")
        raise typer.Exit(1)
    console.print(f"job {job_id} cancelled")
