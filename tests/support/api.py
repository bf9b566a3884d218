"""An in-process API client (httpx over ASGI, with the app's lifespan) and keys of each scope."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx

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


@asynccontextmanager
async def api_client(settings: Settings) -> AsyncIterator[Api]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        keys = {}
        for scope in Scope:
            _, keys[scope.name] = await app.state.runtime.keys.create(scope, name=f"test-{scope.name}")
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield Api(client, app, keys)
