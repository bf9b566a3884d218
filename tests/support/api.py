"""An in-process API client (httpx over ASGI, with the app's lifespan) and keys of each scope."""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx
from starlette.types import ASGIApp, Receive, Send
from starlette.types import Scope as Scope_

from apps.api.main import create_app
from apps.core.api_keys import Scope
from apps.core.config import Settings
from apps.runtime import Runtime


@dataclass
class Api:
    client: httpx.AsyncClient
    app: object
    keys: dict[str, str]

    def headers(self, scope: str = "admin") -> dict[str, str]:
        return {"X-API-Key": self.keys[scope]}

    @property
    def runtime(self) -> Runtime:
        return self.app.state.runtime  # type: ignore[attr-defined]


def _own_context(app: ASGIApp) -> ASGIApp:
    """Each request in its own copy of the context, as a server's task per connection has: httpx's ASGI
    transport calls the app in the test's task, where the request's context variables (its key, its
    visibility) would outlive it and leak into the test's next direct call."""

    async def call(scope: Scope_, receive: Receive, send: Send) -> None:
        await asyncio.create_task(app(scope, receive, send), context=contextvars.copy_context())

    return call


@asynccontextmanager
async def api_client(settings: Settings) -> AsyncIterator[Api]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        keys = {}
        for scope in Scope:
            _, keys[scope.name] = await app.state.runtime.keys.create(scope, name=f"test-{scope.name}")
        transport = httpx.ASGITransport(app=_own_context(app))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield Api(client, app, keys)
