"""The key check of the doors: the REST routes' own (`apps.api.deps.authorize`: verify, scope, rate
limit), with the key taken from `X-API-Key` or an `Authorization: Bearer` header (what MCP and OpenAI
clients send). `KeyGate` runs it in front of an ASGI app (/mcp, the A2A endpoint)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Annotated, Any

from fastapi import HTTPException, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from starlette.datastructures import Headers, State
from starlette.types import ASGIApp, Receive, Scope, Send

from apps.api import problems
from apps.api.deps import Peer, RuntimeDep, authorize
from apps.core.api_keys import KeyInfo
from apps.core.api_keys import Scope as KeyScope
from apps.doors.errors import DoorError
from apps.runtime import Runtime

# Where a door's key sits in the ASGI scope's state once KeyGate let the request in.
KEY_STATE = "door_key"
CHALLENGE = {"WWW-Authenticate": 'Bearer realm="dt-rag", ApiKey'}


def api_key_from(headers: Mapping[str, str]) -> str | None:
    """`X-API-Key`, else the token of `Authorization: Bearer`."""
    key = headers.get("x-api-key")
    if key:
        return key
    scheme, _, token = (headers.get("authorization") or "").partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


async def check(runtime: Runtime, api_key: str | None, state: Any, scope: KeyScope = KeyScope.read,
                peer: Peer | None = None) -> KeyInfo:
    """`authorize` with a DoorError for a refusal (401, 403, 429)."""
    try:
        return await authorize(runtime, api_key, scope, state, peer)
    except HTTPException as exc:
        error = DoorError.from_http(exc)
        if error.status == 401:
            error.headers.update(CHALLENGE)
            error.detail = error.detail.replace("missing X-API-Key header",
                                                "missing API key: send X-API-Key or Authorization: Bearer")
        raise error from None


class KeyGate:
    """An ASGI app behind the doors' key check: refused requests get the problem+json answer REST routes
    give (401 with a challenge, 403, 429); admitted ones carry their key in `scope["state"][KEY_STATE]`.
    `enabled(scope)` False answers 404 first (a door whose flag is off for this request)."""

    def __init__(self, app: ASGIApp, runtime_of: Callable[[], Runtime | None],
                 enabled: Callable[[Scope], bool] | None = None) -> None:
        self.app = app
        self.runtime_of = runtime_of
        self.enabled = enabled

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        runtime = self.runtime_of()
        if runtime is None:
            await _refuse(scope, receive, send, DoorError(503, "starting up; retry shortly", {"Retry-After": "1"}))
            return
        if self.enabled is not None and not self.enabled(scope):
            await _refuse(scope, receive, send, DoorError(404, "Not Found"))
            return
        headers = Headers(scope=scope)
        client = scope.get("client")
        try:
            state[KEY_STATE] = await check(runtime, api_key_from(headers), State(state),
                                           peer=Peer.of(client[0] if client else None, headers))
        except DoorError as exc:
            await _refuse(scope, receive, send, exc)
            return
        await self.app(scope, receive, send)


async def _refuse(scope: Scope, receive: Receive, send: Send, error: DoorError) -> None:
    response = problems.problem_response(error.status, error.detail, instance=scope.get("path", ""),
                                         request_id=scope.get("state", {}).get("request_id"),
                                         headers=error.headers or None)
    await response(scope, receive, send)


_bearer = HTTPBearer(auto_error=False, description="API key as a bearer token (OpenAI clients)")
_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="API key (`dtrag keys create`)")


async def chat_key(request: Request, runtime: RuntimeDep,
                   bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)] = None,
                   header: Annotated[str | None, Security(_header)] = None) -> KeyInfo:
    """The FastAPI dependency of the chat API: a read key as a bearer token (or X-API-Key)."""
    try:
        peer = Peer.of(request.client.host if request.client else None, request.headers)
        return await check(runtime, header or (bearer.credentials if bearer else None), request.state, peer=peer)
    except DoorError as exc:
        raise exc.to_http() from None
