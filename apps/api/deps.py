"""Everything routers depend on, declared once: the runtime, a database session, API-key auth with
scopes, rate limits."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, HTTPException, Request, Security
from fastapi.security import APIKeyHeader
from sqlalchemy.ext.asyncio import AsyncSession

from apps.core.api_keys import KeyInfo, Scope
from apps.runtime import Runtime

log = logging.getLogger(__name__)


def get_runtime(request: Request) -> Runtime:
    return request.app.state.runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


async def get_session(runtime: RuntimeDep) -> AsyncIterator[AsyncSession]:
    async with runtime.sessions() as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session)]

api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="API key (`dtrag keys create`)")


def require(scope: Scope):
    async def check(
        runtime: RuntimeDep,
        api_key: Annotated[str | None, Security(api_key_header)] = None,
    ) -> KeyInfo:
        if not api_key:
            raise HTTPException(401, "missing X-API-Key header", headers={"WWW-Authenticate": "ApiKey"})
        key = await runtime.keys.verify(api_key)
        if key is None:
            raise HTTPException(401, "invalid, revoked or expired API key", headers={"WWW-Authenticate": "ApiKey"})
        if key.scope < scope:
            raise HTTPException(403, f"this key has scope '{key.scope.name}'; this route needs '{scope.name}'")
        limit = key.rate_limit_per_minute or runtime.settings.rate_limit_per_minute
        try:
            decision = await runtime.limiter.hit(key.id, limit)
        except Exception as exc:  # fail open: a limiter outage must not take the API down
            log.warning("rate limiter unavailable, allowing request: %s", type(exc).__name__)
            decision = None
        if decision is not None and not decision.allowed:
            raise HTTPException(
                429, f"rate limit of {limit} requests a minute exceeded; retry in {decision.retry_after_s} s",
                headers={"Retry-After": str(decision.retry_after_s)},
            )
        return key

    return check


ReadKey = Annotated[KeyInfo, Depends(require(Scope.read))]
WriteKey = Annotated[KeyInfo, Depends(require(Scope.write))]
AdminKey = Annotated[KeyInfo, Depends(require(Scope.admin))]
