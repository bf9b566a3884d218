"""Talking to a registered MCP server with the official SDK's client: list its tools, call one.

A connection lasts one operation (a stdio server is started for it and stopped after; an HTTP one gets a
fresh session), so a server that restarts or a peer that moves costs nothing to recover from. Tool lists
are kept `TOOLS_CATALOG_TTL_S` (`ToolCatalog`), so an answer pays for the call alone. `${NAME}` in a
server's headers and env is read from the environment when connecting: secrets stay out of the database.
"""

from __future__ import annotations

import asyncio
import logging
import os
import string
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import anyio
import httpx2
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.types import CallToolResult, TextContent, Tool

from apps.doors.tool_registry import ServerSpec, ToolRegistry

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RemoteTool:
    """A registered server's tool as the policy and the planner see it. Hints the server does not give
    take the MCP spec's defaults: a tool is destructive and open-world unless it says otherwise."""

    server: str
    name: str
    title: str
    description: str
    input_schema: dict[str, Any]
    read_only: bool
    destructive: bool
    open_world: bool
    server_description: str = ""

    @property
    def qualified(self) -> str:
        return f"{self.server}/{self.name}"


@dataclass(frozen=True)
class ToolResult:
    text: str
    structured: dict[str, Any] | None
    is_error: bool


def _expanded(values: Mapping[str, str]) -> dict[str, str]:
    return {k: string.Template(v).safe_substitute(os.environ) for k, v in values.items()}


def _client(spec: ServerSpec, http: httpx2.AsyncClient | None) -> Client:
    # No response cache: DT-RAG keeps its own tool lists, and a tool call's result is never reused.
    if spec.command:
        params = StdioServerParameters(command=spec.command, args=list(spec.args), env=_expanded(spec.env) or None)
        return Client(params, cache=None)
    assert spec.url is not None and http is not None
    return Client(streamable_http_client(spec.url, http_client=http), cache=None)


def _tool(spec: ServerSpec, tool: Tool) -> RemoteTool:
    hints = tool.annotations
    read_only = bool(hints and hints.read_only_hint)
    destructive = not read_only and (hints is None or hints.destructive_hint is None or bool(hints.destructive_hint))
    open_world = hints is None or hints.open_world_hint is None or bool(hints.open_world_hint)
    return RemoteTool(spec.name, tool.name, tool.title or tool.name, tool.description or "",
                      dict(tool.input_schema or {}), read_only, destructive, open_world, spec.description)


class McpClient:
    async def _session(self, spec: ServerSpec, timeout_s: float, work: Any) -> Any:
        with anyio.fail_after(timeout_s):
            if spec.command:
                async with _client(spec, None) as client:
                    return await work(client)
            async with httpx2.AsyncClient(headers=_expanded(spec.headers), timeout=httpx2.Timeout(timeout_s)) as http:
                async with _client(spec, http) as client:
                    return await work(client)

    async def list_tools(self, spec: ServerSpec, timeout_s: float) -> list[RemoteTool]:
        async def work(client: Client) -> list[RemoteTool]:
            return [_tool(spec, t) for t in (await client.list_tools()).tools]

        return await self._session(spec, timeout_s, work)

    async def call(self, spec: ServerSpec, name: str, arguments: dict[str, Any], timeout_s: float) -> ToolResult:
        async def work(client: Client) -> ToolResult:
            result: CallToolResult = await client.call_tool(name, arguments)
            text = "\n".join(c.text for c in result.content if isinstance(c, TextContent))
            structured = result.structured_content if isinstance(result.structured_content, dict) else None
            return ToolResult(text, structured, bool(result.is_error))

        return await self._session(spec, timeout_s, work)


class ToolCatalog:
    """Every registered server's tools, each server's list kept `ttl_s`. A server that does not answer
    is left out for this request (its name in `errors`), never a reason to fail the answer."""

    def __init__(self, registry: ToolRegistry, client: McpClient, ttl_s: float) -> None:
        self.registry = registry
        self.client = client
        self.ttl_s = ttl_s
        self._lists: dict[str, tuple[float, ServerSpec, list[RemoteTool]]] = {}

    async def tools(self, timeout_s: float) -> tuple[dict[str, ServerSpec], list[RemoteTool], list[str]]:
        servers = await self.registry.servers()
        now = time.monotonic()
        stale = [s for s in servers.values() if s.name not in self._lists or self._lists[s.name][1] != s
                 or now - self._lists[s.name][0] > self.ttl_s]
        errors: list[str] = []

        async def fetch(spec: ServerSpec) -> None:
            try:
                self._lists[spec.name] = (time.monotonic(), spec, await self.client.list_tools(spec, timeout_s))
            except Exception as exc:  # an unreachable or broken server: this answer goes on without it
                log.warning("MCP server did not list its tools", extra={"server": spec.name, "error": repr(exc)})
                errors.append(f"{spec.name}: {type(exc).__name__}")
                self._lists.pop(spec.name, None)

        await asyncio.gather(*(fetch(s) for s in stale))
        tools = [t for name in servers if name in self._lists for t in self._lists[name][2]]
        return servers, tools, errors
