"""Everything routers depend on: the service container, API-key auth with scopes, rate limits."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request, Security
from fastapi.security import APIKeyHeader

from apps.core.api_keys import ApiKeyStore, KeyInfo, Scope
from apps.core.rate_limit import RateLimiter
from apps.core.request_log import RequestLog
from apps.orchestration.src.pipelines import Pipelines
from apps.rollout.canary import CanaryController
from apps.runtime import Runtime
from apps.search.cache import SearchCache

log = logging.getLogger(__name__)


@dataclass
class Services:
    runtime: Runtime
    keys: ApiKeyStore
    limiter: RateLimiter
    cache: SearchCache
    request_log: RequestLog
    pipelines: Pipelines
    canary: CanaryController
    redis: Any | None = None

    async def close(self) -> None:
        await self.canary.stop()
        await self.request_log.stop()
        if self.redis is not None:
            await self.redis.aclose()
        await self.runtime.close()


def get_services(request: Request) -> Services:
    return request.app.state.services


ServicesDep = Annotated[Services, Depends(get_services)]

api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="API key (`dtrag keys create`)")


def require(scope: Scope):
    async def check(
        request: Request,
        services: ServicesDep,
        api_key: Annotated[str | None, Security(api_key_header)] = None,
    ) -> KeyInfo:
        if not api_key:
            raise HTTPException(401, "missing X-API-Key header", headers={"WWW-Authenticate": "ApiKey"})
        key = await services.keys.verify(api_key)
        if key is None:
            raise HTTPException(401, "invalid, revoked or expired API key", headers={"WWW-Authenticate": "ApiKey"})
        if key.scope < scope:
            raise HTTPException(403, f"this key has scope '{key.scope.name}'; this route needs '{scope.name}'")
        limit = key.rate_limit_per_minute or services.runtime.settings.rate_limit_per_minute
        try:
            decision = await services.limiter.hit(key.id, limit)
        except Exception as exc:  # fail open: a limiter outage must not take the API down
            log.warning("rate limiter unavailable, allowing request: %s", type(exc).__name__)
            decision = None
        if decision is not None and not decision.allowed:
            raise HTTPException(
                429, f"rate limit of {limit} requests a minute exceeded; retry in {decision.retry_after_s} s",
                headers={"Retry-After": str(decision.retry_after_s)},
            )
        request.state.api_key_id = key.id
        return key

    return check


ReadKey = Annotated[KeyInfo, Depends(require(Scope.read))]
WriteKey = Annotated[KeyInfo, Depends(require(Scope.write))]
AdminKey = Annotated[KeyInfo, Depends(require(Scope.admin))]
