"""`dtrag mcp` (DT-RAG as an MCP server on stdio, for desktop agents) and `dtrag tools add | list | remove`
(the MCP servers the answer graph may call with `mcp_tools` on; stored in the database beside MCP_SERVERS).

`register(app)` adds both to the `dtrag` command; `python -m apps.cli.doors ...` runs them alone.
"""

from __future__ import annotations

from typing import Any

import typer
from rich.table import Table

from apps.cli.common import console, emit, fail, run, with_runtime

tools_app = typer.Typer(help="MCP servers the answer graph may call (mcp_tools).", no_args_is_help=True)


def mcp() -> None:
    """Serve DT-RAG's MCP tools on stdin/stdout for a desktop agent; the key is DTRAG_API_KEY."""
    from apps.core.config import get_settings
    from apps.core.migrations import upgrade
    from apps.doors.mcp_server import serve_stdio

    upgrade(get_settings().database_url)
    raise typer.Exit(run(serve_stdio()))


def _pairs(values: list[str], option: str) -> dict[str, str]:
    pairs = {}
    for value in values:
        name, sep, text = value.partition("=")
        if not sep or not name.strip():
            fail(f"{option} takes NAME=VALUE, not {value!r}")
        pairs[name.strip()] = text
    return pairs


@tools_app.command("add")
def tools_add(
    name: str = typer.Argument(..., help="the server's name: tools are called NAME/TOOL"),
    command: str | None = typer.Option(None, help="stdio: the command that starts the server"),
    arg: list[str] = typer.Option([], "--arg", help="stdio: an argument of the command (repeat)"),
    env: list[str] = typer.Option([], "--env", help="stdio: NAME=VALUE for the server's environment (repeat); "
                                                    "${VAR} is read from DT-RAG's environment when starting it"),
    url: str | None = typer.Option(None, help="HTTP: the server's streamable HTTP endpoint, e.g. http://host:8000/mcp"),
    header: list[str] = typer.Option([], "--header", help="HTTP: NAME=VALUE header (repeat), e.g. "
                                                          "'X-API-Key=${PEER_KEY}' (read when connecting)"),
    description: str = typer.Option("", help="what the server knows: questions no document answers are matched "
                                              "against it"),
) -> None:
    """Register an MCP server (stdio --command or HTTP --url)."""
    from apps.doors.tool_registry import RegistryError, ServerSpec, ToolRegistry

    spec = ServerSpec(name=name, command=command, args=tuple(arg), env=_pairs(env, "--env"), url=url,
                      headers=_pairs(header, "--header"), description=description)

    async def add(rt: Any) -> None:
        await ToolRegistry(rt.engine, rt.settings).add(spec)

    try:
        spec.check()
        with_runtime(add)
    except RegistryError as exc:
        fail(str(exc))
    console.print(f"registered {name} ({spec.transport})")


@tools_app.command("list")
def tools_list(as_json: bool = typer.Option(False, "--json", help="print the servers as JSON")) -> None:
    """The registered MCP servers: MCP_SERVERS and the stored ones (header and env values are not shown)."""
    from apps.doors.tool_registry import ToolRegistry

    async def servers(rt: Any) -> list[dict[str, Any]]:
        return [s.public() for s in (await ToolRegistry(rt.engine, rt.settings).servers()).values()]

    emit(with_runtime(servers), as_json, _show)


def _show(rows: list[dict[str, Any]]) -> None:
    table = Table("name", "transport", "endpoint", "source", "description")
    for s in rows:
        endpoint = s["url"] or " ".join([s["command"] or "", *s["args"]])
        table.add_row(s["name"], s["transport"], endpoint, s["source"], s["description"])
    console.print(table)


@tools_app.command("remove")
def tools_remove(name: str) -> None:
    """Forget a stored MCP server (one from MCP_SERVERS is removed from the setting)."""
    from apps.doors.tool_registry import ToolRegistry

    async def remove(rt: Any) -> bool:
        return await ToolRegistry(rt.engine, rt.settings).remove(name)

    if not with_runtime(remove):
        fail(f"no stored MCP server named {name!r}")
    console.print(f"removed {name}")


def register(app: typer.Typer) -> None:
    """Adds `mcp` and `tools` to the `dtrag` command."""
    app.command("mcp")(mcp)
    app.add_typer(tools_app, name="tools")
