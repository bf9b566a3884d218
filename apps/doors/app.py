"""The doors on the HTTP app: `Doors` mounts MCP (/mcp), the A2A agent and the chat API on a FastAPI app
and binds them to the app's runtime for its lifetime.

    doors = Doors(settings)              # in create_app
    doors.mount(app)
    async with doors.serving(runtime):   # in the app's lifespan, once the runtime is built
        yield
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from mcp.server.transport_security import TransportSecuritySettings
from starlette.routing import Route

from apps.core.config import Settings
from apps.doors import chat_api
from apps.doors.a2a import A2ADoor
from apps.doors.auth import KeyGate
from apps.doors.kit import DoorKit
from apps.doors.mcp_server import build_server, http_identity
from apps.runtime import Runtime

MCP_PATH = "/mcp"


def _transport_security(settings: Settings) -> TransportSecuritySettings:
    """The SDK's DNS-rebinding check on Host (and Origin) when MCP_ALLOWED_HOSTS names hosts. Off by
    default: every /mcp request needs an API key, which a rebinding page does not have."""
    hosts = [h.strip() for h in settings.mcp_allowed_hosts.split(",") if h.strip()]
    origins = [f"{scheme}://{h}" for h in hosts for scheme in ("http", "https")]
    return TransportSecuritySettings(enable_dns_rebinding_protection=bool(hosts), allowed_hosts=hosts,
                                     allowed_origins=origins)


class Doors:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.kit: DoorKit | None = None
        self.mcp = build_server(lambda: self.kit, "mcp", http_identity())
        # Stateless and JSON: any worker answers any request, no session lives in a process.
        self.mcp.streamable_http_app(stateless_http=True, json_response=True,
                                     transport_security=_transport_security(settings),
                                     max_request_body_size=settings.max_request_bytes)
        self.a2a = A2ADoor(lambda: self.kit, settings)

    def _runtime(self) -> Runtime | None:
        return self.kit.runtime if self.kit is not None else None

    def mount(self, app: FastAPI) -> None:
        app.router.routes.append(Route(MCP_PATH, KeyGate(self.mcp.session_manager.handle_request, self._runtime),
                                       methods=["GET", "POST", "DELETE"]))
        app.include_router(chat_api.router)
        self.a2a.mount(app, self._runtime)

    async def _run_mcp(self, started: asyncio.Event, stop: asyncio.Event) -> None:
        async with self.mcp.session_manager.run():
            started.set()
            await stop.wait()

    @asynccontextmanager
    async def serving(self, runtime: Runtime) -> AsyncIterator[None]:
        kit = DoorKit(runtime)
        kit.start()
        self.kit = kit
        # The SDK's session manager holds an anyio task group, which must close in the task that opened it:
        # a task of its own, so the lifespan may end in another task than it began (as test fixtures do).
        started, stop = asyncio.Event(), asyncio.Event()
        manager = asyncio.create_task(self._run_mcp(started, stop), name="mcp-session-manager")
        try:
            waiter = asyncio.create_task(started.wait())
            await asyncio.wait([manager, waiter], return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
            if manager.done():
                manager.result()  # it failed to start: raise its error
            yield
        finally:
            stop.set()
            await asyncio.gather(manager, return_exceptions=True)
            self.kit = None
            await kit.close()
