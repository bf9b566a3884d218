"""What every `dtrag` command module shares: consoles and turning known failures into one clear line."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

import typer
from rich.console import Console
from sqlalchemy.exc import OperationalError, ProgrammingError

from apps.core.flags import FlagConfigError

T = TypeVar("T")
console = Console()
err = Console(stderr=True)


def fail(message: str, code: int = 1) -> None:
    err.print(f"[red]error:[/red] {message}")
    raise typer.Exit(code)


def run(work: Coroutine[Any, Any, T]) -> T:
    try:
        return asyncio.run(work)
    except (OperationalError, ProgrammingError) as exc:
        text = str(exc.orig)
        if "no such table" in text or "does not exist" in text:
            fail("the database is not migrated: run `dtrag db upgrade`")
        raise
    except FlagConfigError as exc:
        fail(str(exc))
    raise AssertionError("unreachable")
