"""`dtrag worker` and `dtrag jobs list|show|retry|cancel`; `submit()` for the `--async` options."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import typer
from rich.table import Table

from apps.cli.common import console, emit, fail, print_json, with_runtime
from apps.core.config import get_settings

jobs_app = typer.Typer(help="Durable jobs: list, inspect, retry, cancel.", no_args_is_help=True)
T = TypeVar("T")


def _run(work: Callable[[Any], Awaitable[T]]) -> T:
    """`work` on a runtime whose flags (which decide where a job runs) are freshly read."""
    async def fresh(runtime: Any) -> T:
        await runtime.flags.refresh(force=True)
        return await work(runtime)

    return with_runtime(fresh)


def submit(kind: str, **kwargs: Any) -> None:
    """Accept a job and print it; an in-process job is left to a serving process's sweep."""
    async def work(runtime: Any) -> Any:
        submitted = await runtime.jobs.submit(kind, run_here=False, **kwargs)
        return await runtime.jobs.get(submitted.job_id)

    job = _run(work)
    print_json(job.model_dump(mode="json", include={"job_id", "status", "mode", "mode_reason"}))


def worker(burst: bool = typer.Option(False, "--burst", help="exit once the queue is empty"),
           name: str | None = typer.Option(None, help="worker name (default: RQ's)")) -> None:
    """Run an RQ worker for DT-RAG's job queue (needs REDIS_URL)."""
    from apps.jobs.worker import run_worker

    if not get_settings().redis_url:
        fail("REDIS_URL is not set; without it jobs run inside `dtrag serve`")
    run_worker(burst=burst, name=name)


@jobs_app.command("list")
def jobs_list(status: str | None = typer.Option(None, help="queued | running | succeeded | failed | cancelled | dead_letter"),
              limit: int = typer.Option(50, min=1, max=500), as_json: bool = typer.Option(False, "--json")) -> None:
    """Jobs, newest first."""
    jobs = _run(lambda rt: rt.jobs.list(status, limit))
    emit([j.model_dump(mode="json") for j in jobs], as_json, _show, indent=2)


def _show(jobs: list[dict[str, Any]]) -> None:
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
        fail(f"no job {job_id}")
    print_json(job.model_dump(mode="json"), indent=2)


@jobs_app.command("retry")
def jobs_retry(job_id: str) -> None:
    """Run a failed, cancelled or dead-lettered job again."""
    from apps.jobs.service import JobStateError

    try:
        _run(lambda rt: rt.jobs.retry(job_id))
    except JobStateError as exc:
        fail(str(exc))
    console.print(f"job {job_id} queued again")


@jobs_app.command("cancel")
def jobs_cancel(job_id: str) -> None:
    """Cancel a queued or running job."""
    if not _run(lambda rt: rt.jobs.cancel(job_id, actor="cli")):
        fail(f"job {job_id} is not queued or running")
    console.print(f"job {job_id} cancelled")
