"""What a door's caller may see: the collections of SPEC-ACCESS-001, through the same functions the REST
routes use (`apps.core.visibility`, `apps.api.deps.narrowed`). The key check leaves each request its
`Visibility` (the key's collections and groups, narrowed by a trusted proxy's end-user groups); every door
narrows it by the request's `collections` here and searches, answers and reads documents with it."""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import HTTPException
from pydantic import BaseModel, Field

from apps.api.deps import narrowed
from apps.core.api_keys import KeyInfo
from apps.core.visibility import Visibility, visibility_of
from apps.doors.errors import DoorError
from apps.runtime import Runtime


class Collection(BaseModel):
    name: str
    description: str
    documents: int = Field(description="documents in it")


async def visible(runtime: Runtime, viewer: KeyInfo | Visibility) -> list[Collection]:
    """The collections a key (or a request's visibility) may use, with their document counts."""
    view = viewer if isinstance(viewer, Visibility) else visibility_of(viewer)
    return [Collection(name=c.name, description=c.description, documents=c.documents)
            for c in await runtime.collections.list(view)]


async def scope(runtime: Runtime, view: Visibility, requested: Sequence[str] | None) -> Visibility:
    """`view` narrowed to the collections a request names: 403 for one the key may not use, 404 for one
    that does not exist (REST's answers)."""
    try:
        return await narrowed(runtime, view, list(requested) if requested else None)
    except HTTPException as exc:
        raise DoorError.from_http(exc) from None
