"""The MCP servers DT-RAG may call: MCP_SERVERS (settings) and those `dtrag tools add` stored in the
`tool_servers` table. A server is reached over stdio (`command`, `args`, `env`) or streamable HTTP (`url`,
`headers`); its `description` says what it knows, and the tools node matches plan parts against it."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from apps.core.config import Settings
from apps.core.db import write_transaction
from apps.core.models import ToolServer

log = logging.getLogger(__name__)

# A tool is named `server/tool` in allowlists, mentions and sources: no slash in a server's name.
SERVER_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class RegistryError(ValueError):
    """A registration that cannot be: a bad name, both or neither transport, a name already taken."""


@dataclass(frozen=True)
class ServerSpec:
    name: str
    command: str | None = None
    args: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    url: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    description: str = ""
    source: str = "database"  # or "settings"

    @property
    def transport(self) -> str:
        return "stdio" if self.command else "http"

    def check(self) -> ServerSpec:
        if not SERVER_NAME.match(self.name):
            raise RegistryError(f"server name {self.name!r}: 1-64 letters, digits, '_' or '-'")
        if bool(self.command) == bool(self.url):
            raise RegistryError(f"server {self.name!r} needs exactly one of a command (stdio) or a URL (HTTP)")
        if self.url and not re.match(r"^https?://", self.url):
            raise RegistryError(f"server {self.name!r}: the URL must be http(s)://...")
        return self

    def public(self) -> dict[str, Any]:
        """What `dtrag tools list` shows: header and env values (often keys) are not printed."""
        return {"name": self.name, "transport": self.transport, "command": self.command, "args": list(self.args),
                "url": self.url, "headers": sorted(self.headers), "env": sorted(self.env),
                "description": self.description, "source": self.source}


def spec_from_settings(name: str, entry: Mapping[str, Any]) -> ServerSpec:
    return ServerSpec(name=name, command=entry.get("command"), args=tuple(entry.get("args") or ()),
                      env=dict(entry.get("env") or {}), url=entry.get("url"), headers=dict(entry.get("headers") or {}),
                      description=str(entry.get("description") or ""), source="settings").check()


def _spec(row: ToolServer) -> ServerSpec:
    return ServerSpec(name=row.name, command=row.command, args=tuple(row.args or ()), env=dict(row.env or {}),
                      url=row.url, headers=dict(row.headers or {}), description=row.description or "")


class ToolRegistry:
    def __init__(self, engine: AsyncEngine, settings: Settings) -> None:
        self._engine = engine
        self._configured = {name: spec_from_settings(name, entry) for name, entry in settings.mcp_servers.items()}

    async def add(self, spec: ServerSpec) -> None:
        spec.check()
        if spec.name in self._configured:
            raise RegistryError(f"server {spec.name!r} is configured in MCP_SERVERS")
        try:
            async with write_transaction(self._engine) as conn:
                await conn.execute(insert(ToolServer).values(
                    name=spec.name, command=spec.command, args=list(spec.args), env=dict(spec.env), url=spec.url,
                    headers=dict(spec.headers), description=spec.description))
        except IntegrityError:
            raise RegistryError(f"a server named {spec.name!r} is registered already; remove it first") from None

    async def remove(self, name: str) -> bool:
        async with write_transaction(self._engine) as conn:
            result = await conn.execute(delete(ToolServer).where(ToolServer.name == name))
        return bool(result.rowcount)

    async def servers(self) -> dict[str, ServerSpec]:
        """Every server, the configured ones first; a stored one with a configured one's name is ignored."""
        async with AsyncSession(self._engine) as session:
            rows = (await session.execute(select(ToolServer).order_by(ToolServer.name))).scalars().all()
        servers = dict(self._configured)
        for row in rows:
            if row.name in servers:
                log.warning("a stored MCP server has the name of a configured one: ignored", extra={"server": row.name})
                continue
            servers[row.name] = _spec(row)
        return servers
