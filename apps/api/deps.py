"""Everything routers depend on, declared once: the runtime, a database session, API-key auth with
scopes, rate limits, and what the request may see (`VisibilityDep`, made by the key check itself)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from functools import lru_cache
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request, Security
from fastapi.security import APIKeyHeader
from sqlalchemy.ext.asyncio import AsyncSession

from apps.core.api_keys import KeyInfo, Scope
from apps.core.visibility import (
    FORWARDED_GROUPS_HEADER,
    CollectionAccessError,
    Visibility,
    forwarded_groups,
    request_visibility,
    trusted_networks,
    visibility_of,
)
from apps.runtime import Runtime

log = logging.getLogger(__name__)

# The key the current request runs under, for work that runs deeper than the route (the answer graph's tool
# calls check it against TOOLS_ALLOWLIST); set by `authorize`, inherited by the tasks the request starts.
current_key: ContextVar[KeyInfo | None] = ContextVar("current_key", default=None)


def get_runtime(request: Request) -> Runtime:
    return request.app.state.runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


async def get_session(runtime: RuntimeDep) -> AsyncIterator[AsyncSession]:
    async with runtime.sessions() as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session)]

api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="API key (`dtrag keys create`)")


@dataclass(frozen=True)
class Peer:
    """Where a request came from: its client address and its X-Forwarded-Groups header (read only when the
    address is one of TRUSTED_PROXY_CIDRS)."""

    host: str | None
    groups_header: str | None = None

    @classmethod
    def of(cls, host: str | None, headers: Mapping[str, str]) -> Peer:
        return cls(host, headers.get(FORWARDED_GROUPS_HEADER))


@lru_cache(maxsize=8)
def _networks(cidrs: str) -> tuple[Any, ...]:
    return trusted_networks(cidrs)


def require(scope: Scope):
    async def check(
        request: Request,
        runtime: RuntimeDep,
        api_key: Annotated[str | None, Security(api_key_header)] = None,
    ) -> KeyInfo:
        peer = Peer.of(request.client.host if request.client else None, request.headers)
        return await authorize(runtime, api_key, scope, request.state, peer)

    return check


async def authorize(runtime: Runtime, api_key: str | None, scope: Scope, state: Any, peer: Peer | None = None) -> KeyInfo:
    """The one key check (verify, scope, rate limit) of every door: REST routes through `require`, MCP,
    A2A and the chat API (apps/doors) directly. `state` gets `api_key_id` once the key is valid, and
    `visibility`, what the request may see (`apps.core.visibility.visibility_of` of the key and, from a
    trusted proxy `peer`, the end user's groups), which is also the request's `request_visibility`.
    Raises HTTPException 401/403/429."""
    if not api_key:
        raise HTTPException(401, "missing X-API-Key header", headers={"WWW-Authenticate": "ApiKey"})
    key = await runtime.keys.verify(api_key)
    if key is None:
        raise HTTPException(401, "invalid, revoked or expired API key", headers={"WWW-Authenticate": "ApiKey"})
    # The request log counts only such requests where they steer decisions (canary, health).
    state.api_key_id = key.id
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
    current_key.set(key)
    groups = forwarded_groups(_networks(runtime.settings.trusted_proxy_cidrs), peer.host if peer else None,
                              peer.groups_header if peer else None)
    state.visibility = visibility_of(key, groups)
    request_visibility.set(state.visibility)
    return key


def get_visibility(request: Request) -> Visibility:
    """What the request's key may see, as the key dependency left it (declare the key before this)."""
    visibility = getattr(request.state, "visibility", None)
    if visibility is None:
        raise RuntimeError("VisibilityDep needs a key dependency (ReadKey, WriteKey, AdminKey) declared before it")
    return visibility


VisibilityDep = Annotated[Visibility, Depends(get_visibility)]


async def narrowed(runtime: Runtime, visibility: Visibility, requested: Sequence[str] | None) -> Visibility:
    """`visibility` narrowed to the collections a request names: 403 for one the key may not use, 404 for
    one that does not exist (when the key may use every name)."""
    try:
        scoped = visibility.narrowed(requested)
    except CollectionAccessError as exc:
        raise HTTPException(403, str(exc)) from None
    if requested:
        missing = set(requested) - set(await runtime.store.collection_ids(set(requested)))
        if missing:
            raise HTTPException(404, f"no collection named {', '.join(map(repr, sorted(missing)))}")
    return scoped


ReadKey = Annotated[KeyInfo, Depends(require(Scope.read))]
WriteKey = Annotated[KeyInfo, Depends(require(Scope.write))]
AdminKey = Annotated[KeyInfo, Depends(require(Scope.admin))]
