"""Collections: list and read (a key sees those it may use; another is a 404, like one that does not
exist), create, describe and delete (an admin key, for collections it may use). Deleting refuses a
non-empty collection unless ?cascade=true, which deletes its documents with it."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query, Response

from apps.api.deps import AdminKey, ReadKey, RuntimeDep, VisibilityDep
from apps.api.schemas import CollectionIn, CollectionOut, CollectionPatch
from apps.core.visibility import Visibility
from apps.ingestion.collections import (
    CollectionError,
    CollectionExistsError,
    CollectionInfo,
    CollectionNotEmptyError,
    UnknownCollectionError,
)

router = APIRouter(prefix="/collections", tags=["collections"])
NamePath = Annotated[str, Path(min_length=1, max_length=64)]


def _out(info: CollectionInfo) -> CollectionOut:
    return CollectionOut(name=info.name, description=info.description, created_at=info.created_at,
                         documents=info.documents, chunks=info.chunks)


def _own(visibility: Visibility, name: str) -> None:
    """An admin key bound to collections manages only those (another looks like one that does not exist)."""
    if not visibility.may_use(name):
        raise HTTPException(404, f"no collection named {name!r}")


@router.get("", response_model=list[CollectionOut], summary="The collections this key may use, with counts")
async def list_collections(runtime: RuntimeDep, _: ReadKey, visibility: VisibilityDep) -> list[CollectionOut]:
    return [_out(c) for c in await runtime.collections.list(visibility)]


@router.post("", response_model=CollectionOut, status_code=201, summary="Create a collection (admin)")
async def create_collection(body: CollectionIn, runtime: RuntimeDep, _: AdminKey,
                            visibility: VisibilityDep) -> CollectionOut:
    if not visibility.may_use(body.name):
        raise HTTPException(403, f"this key may not use collection {body.name!r}")
    try:
        return _out(await runtime.collections.create(body.name, body.description))
    except CollectionExistsError as exc:
        raise HTTPException(409, str(exc)) from None
    except CollectionError as exc:
        raise HTTPException(422, str(exc)) from None


@router.get("/{name}", response_model=CollectionOut, summary="A collection with its document and chunk counts")
async def get_collection(name: NamePath, runtime: RuntimeDep, _: ReadKey, visibility: VisibilityDep) -> CollectionOut:
    try:
        return _out(await runtime.collections.get(name, visibility))
    except UnknownCollectionError as exc:
        raise HTTPException(404, str(exc)) from None


@router.patch("/{name}", response_model=CollectionOut, summary="Change a collection's description (admin)")
async def update_collection(name: NamePath, body: CollectionPatch, runtime: RuntimeDep, _: AdminKey,
                            visibility: VisibilityDep) -> CollectionOut:
    _own(visibility, name)
    try:
        return _out(await runtime.collections.update(name, body.description))
    except UnknownCollectionError as exc:
        raise HTTPException(404, str(exc)) from None


@router.delete("/{name}", status_code=204, summary="Delete a collection (admin); ?cascade=true with its documents")
async def delete_collection(name: NamePath, runtime: RuntimeDep, _: AdminKey, visibility: VisibilityDep,
                            cascade: Annotated[bool, Query(description="delete its documents too")] = False,
                            ) -> Response:
    _own(visibility, name)
    if cascade and visibility.groups is not None:  # it would delete documents this request may not see
        raise HTTPException(403, "?cascade=true needs a request not bound by access groups")
    try:
        await runtime.collections.delete(name, cascade)
    except UnknownCollectionError as exc:
        raise HTTPException(404, str(exc)) from None
    except CollectionNotEmptyError as exc:
        raise HTTPException(409, str(exc)) from None
    except CollectionError as exc:
        raise HTTPException(422, str(exc)) from None
    return Response(status_code=204)
