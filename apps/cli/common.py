"""What every `dtrag` command module shares: consoles, one clear line for known failures, a runtime for
one command, `--json` output and the ingest progress bar."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Coroutine
from datetime import date
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from sqlalchemy.exc import OperationalError, ProgrammingError

from apps.core.config import SettingsError, get_settings, load_settings
from apps.core.flags import FlagConfigError

if TYPE_CHECKING:
    from apps.runtime import Runtime

T = TypeVar("T")
D = TypeVar("D")
console = Console()
err = Console(stderr=True)


def fail(message: str, code: int = 1) -> NoReturn:
    err.print(f"[red]error:[/red] {message}")
    raise typer.Exit(code)


def run(work: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run`, with an unmigrated database or a bad flag setting turned into one clear line."""
    try:
        return asyncio.run(work)
    except (OperationalError, ProgrammingError) as exc:
        text = str(exc.orig)
        if "no such table" in text or "does not exist" in text:
            fail("the database is not migrated: run `dtrag db upgrade`")
        raise
    except FlagConfigError as exc:
        fail(str(exc))


def with_runtime(work: Callable[[Runtime], Awaitable[T]]) -> T:
    """Run `work` on a runtime for the configured database; the runtime is closed afterwards."""
    from apps.runtime import build_runtime

    async def main() -> T:
        async with build_runtime(get_settings()) as runtime:
            return await work(runtime)

    return run(main())


def resolve_database_url(option: str | None) -> str | None:
    """A `--database-url` as the settings read it (postgresql:// → postgresql+asyncpg://), or None."""
    if not option:
        return None
    try:
        return load_settings(database_url=option).database_url
    except SettingsError as exc:
        fail(str(exc))


def _plain(value: Any) -> Any:
    return value.isoformat() if isinstance(value, date) else str(value)


def print_json(data: Any, indent: int | None = None) -> None:
    print(json.dumps(data, indent=indent, default=_plain))


def emit(data: D, as_json: bool, render: Callable[[D], None], indent: int | None = None) -> None:
    """`--json` prints the data as JSON (for scripts); otherwise `render` shows it to a person."""
    if as_json:
        print_json(data, indent)
    else:
        render(data)


def progress() -> Progress:
    """The ingest progress bar, on stderr so stdout stays the command's result."""
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[chunks]} chunks"),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(), TimeRemainingColumn(), console=err, transient=False,
    )
