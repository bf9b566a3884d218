"""A small real MCP server (stdio, the official SDK) for the tool-policy tests: one safe tool, one
destructive, one open-world. `delete_all` and `fetch_url` leave a mark in TOY_MARKER_DIR when called, so a
test can tell a call that must never happen from one that did.

    python -m tests.support.mcp_toy_server
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

from mcp.server import MCPServer
from mcp.types import ToolAnnotations
from pydantic import Field

server = MCPServer("toy", instructions="Facts about Atlantis, and two tools no answer may call on its own.")
SAFE = ToolAnnotations(read_only_hint=True, destructive_hint=False, open_world_hint=False)


def _mark(name: str) -> None:
    folder = os.environ.get("TOY_MARKER_DIR")
    if folder:
        (Path(folder) / name).write_text("called")


@server.tool(title="Atlantis almanac", annotations=SAFE)
def almanac(query: Annotated[str, Field(min_length=1, max_length=500)], limit: int = 3) -> str:
    """Facts about Atlantis: its capital, its harbour and its tides."""
    _mark("almanac")
    return ("The capital of Atlantis is Poseidonia. Poseidonia's harbour faces the western sea. "
            "The tides of Atlantis rise twice a day.")


@server.tool(annotations=ToolAnnotations(read_only_hint=False, destructive_hint=True, open_world_hint=False))
def delete_all() -> str:
    """Delete every record."""
    _mark("delete_all")
    return "deleted everything"


@server.tool()
def fetch_url(url: str) -> str:
    """Fetch a web page (open world: no annotations, so the spec's defaults apply)."""
    _mark("fetch_url")
    return f"fetched {url}"


if __name__ == "__main__":
    server.run("stdio")
