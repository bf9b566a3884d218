"""Documents: ingest as a job (JSON, file upload or a batch; idempotency keys), list, read, chunks, delete;
taxonomy. Ingesting answers 202 with the job; the job's row holds the stored payload.

Every read and delete sees only what the key may (`VisibilityDep`): another collection's document, or one
whose access groups the key does not share, is a 404 like a missing one. A key writes only to collections
it may use (403), gives only groups it carries (403), and its job carries its view, so re-posting an
external id never replaces a document it cannot see."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Header, HTTPException, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.datastructures import UploadFile

from apps.api.deps import ReadKey, RuntimeDep, SessionDep, VisibilityDep, WriteKey
from apps.api.schemas import (
    BatchIn,
    ChunkOut,
    DocumentIn,
    DocumentOut,
    DocumentPage,
    IngestOut,
    JobAccepted,
    TaxonomyNode,
)
from apps.core.api_keys import KeyInfo
from apps.core.idempotency import IdempotencyConflictError
from apps.core.visibility import DEFAULT_COLLECTION, Visibility
from apps.doors import operations
from apps.doors.errors import DoorError
from apps.ingestion import catalog
from apps.ingestion.documents import SourceDocument
from apps.ingestion.loaders import SUPPORTED_SUFFIXES
from apps.ingestion.validation import DocumentFields
from apps.jobs.kinds import document_fields
from apps.jobs.service import QuotaExceededError
from apps.jobs.store import Payload
from apps.jobs.types import ErrorKind, JobKind, JobStatus
from apps.runtime import Runtime

router = APIRouter(tags=["documents"])

_UPLOAD_SCHEMA = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/DocumentIn"}},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {"type": "string", "format": "binary",
                                 "description": f"one of {', '.join(SUPPORTED_SUFFIXES)}"},
                        "title": {"type": "string"},
                        "external_id": {"type": "string"},
                        "source_url": {"type": "string"},
                        "taxonomy_path": {"type": "string", "description": "e.g. ai/ml"},
                        "metadata": {"type": "string", "description": "a JSON object"},
                        "collection": {"type": "string", "description": f"default {DEFAULT_COLLECTION!r}"},
                        "access_groups": {"type": "string", "description": "comma-separated groups"},
                    },
                }
            },
        },
    }
}
_BATCH_SCHEMA = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/BatchIn"}},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["files"],
                    "properties": {
                        "files": {"type": "array", "items": {"type": "string", "format": "binary"}},
                        "taxonomy_path": {"type": "string"},
                        "metadata": {"type": "string", "description": "a JSON object, for every file"},
                        "collection": {"type": "string", "description": "for every file"},
                        "access_groups": {"type": "string", "description": "comma-separated, for every file"},
                    },
                }
            },
        },
    }
}


def _invalid(field: str, message: str) -> RequestValidationError:
    return RequestValidationError([{"loc": ("body", field), "msg": message, "type": "value_error"}])


def _document_payload(body: DocumentIn) -> Payload:
    return Payload(None, document_fields(SourceDocument(
        text=body.text, title=body.title, external_id=body.external_id, source_url=body.source_url,
        taxonomy_path=body.taxonomy_path or "", metadata=body.metadata or {},  # type: ignore[arg-type]
        origin=body.external_id or "request body", collection=body.collection or DEFAULT_COLLECTION,
        access_groups=tuple(body.access_groups or ()))), None)


def _validated(payload: Any, model: type[BaseModel]) -> Any:
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        raise RequestValidationError(
            [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False, include_context=False)]
        ) from None


async def _file_payloads(request: Request, runtime: Runtime, batch: bool) -> tuple[list[Payload], str]:
    """The uploaded files, stored as they came (parsed by the job), after the checks that need no parsing."""
    form = await request.form()
    uploads = [v for k, v in form.multi_items() if k in ("file", "files") and isinstance(v, UploadFile)]
    if not uploads:
        raise _invalid("file", "a file field is required")
    if len(uploads) > 1 and not batch:
        raise _invalid("file", "one file per request; POST /api/v1/documents/batch takes several")
    fields = {k: v for k, v in form.items() if isinstance(v, str)}
    try:
        metadata = json.loads(fields.get("metadata") or "{}")
    except (json.JSONDecodeError, RecursionError):
        raise _invalid("metadata", "must be a JSON object") from None
    if not isinstance(metadata, dict):
        raise _invalid("metadata", "must be a JSON object")
    # The same checks as a JSON body's; a title left out is the one the parser finds (cut to the limit).
    groups = [g.strip() for g in (fields.get("access_groups") or "").split(",") if g.strip()]
    shared = _validated({"title": fields.get("title") or "", "external_id": fields.get("external_id") or None,
                         "source_url": fields.get("source_url") or None, "taxonomy_path": fields.get("taxonomy_path"),
                         "metadata": metadata, "collection": fields.get("collection") or None,
                         "access_groups": groups or None}, DocumentFields).model_dump()
    digest = hashlib.sha256(json.dumps(fields, sort_keys=True).encode())
    payloads = []
    for upload in uploads:
        name = upload.filename or "upload"
        data = await upload.read()
        if Path(name).suffix.lower() not in SUPPORTED_SUFFIXES:
            raise HTTPException(422, f"{name}: unsupported file type; supported: {', '.join(SUPPORTED_SUFFIXES)}")
        if len(data) > runtime.settings.max_document_bytes:
            raise HTTPException(422, f"{name}: file is {len(data):,} bytes, over the "
                                     f"{runtime.settings.max_document_bytes:,}-byte limit")
        digest.update(name.encode() + b"\0" + hashlib.sha256(data).digest())
        payloads.append(Payload(name, shared, data))
    return payloads, digest.hexdigest()


async def _payloads(request: Request, runtime: Runtime, batch: bool) -> tuple[list[Payload], str]:
    """The request's documents as job payloads, and a hash of their meaning (not their bytes:
    multipart boundaries vary)."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "application/json":
        try:
            raw = json.loads(await request.body())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise HTTPException(400, f"malformed JSON body: {exc}") from None
        except RecursionError:
            raise HTTPException(400, "malformed JSON body: nested too deeply") from None
        bodies = _validated(raw, BatchIn).documents if batch else [_validated(raw, DocumentIn)]
        canonical = json.dumps([b.model_dump() for b in bodies], sort_keys=True, ensure_ascii=False)
        return [_document_payload(b) for b in bodies], hashlib.sha256(canonical.encode()).hexdigest()
    if content_type == "multipart/form-data":
        return await _file_payloads(request, runtime, batch)
    raise HTTPException(415, "send application/json or multipart/form-data")


_FAILED_STATUS = {ErrorKind.invalid_input: 422, ErrorKind.conflict: 409}


async def _placement(runtime: Runtime, visibility: Visibility, payloads: list[Payload]) -> list[str]:
    """The collections the payloads go to, once the key may write there with their groups (403) and they
    exist (404): refused before anything is stored."""
    names = sorted({p.fields.get("collection") or DEFAULT_COLLECTION for p in payloads})
    forbidden = [n for n in names if not visibility.may_use(n)]
    if forbidden:
        raise HTTPException(403, f"this key may not write to collection {', '.join(map(repr, forbidden))}")
    if visibility.groups is not None:
        foreign = {g for p in payloads for g in p.fields.get("access_groups") or ()} - visibility.groups
        if foreign:
            raise HTTPException(403, f"this key may not give access groups it does not carry: {', '.join(sorted(foreign))}")
    missing = set(names) - set(await runtime.store.collection_ids(set(names)))
    if missing:
        raise HTTPException(404, f"no collection named {', '.join(map(repr, sorted(missing)))}; create it with "
                                 "POST /api/v1/collections (an admin key)")
    return names


async def _accept(request: Request, response: Response, runtime: Runtime, key: KeyInfo, visibility: Visibility,
                  idempotency_key: str | None, wait: bool, batch: bool) -> Any:
    # ?wait=true goes by the body as received: a chunked body has no Content-Length, and a header proves nothing.
    received = len(await request.body()) if wait and not batch else 0
    payloads, request_hash = await _payloads(request, runtime, batch)
    collections = await _placement(runtime, visibility, payloads)
    scope = f"{key.id}:documents{'/batch' if batch else ''}"
    try:
        # The job carries the key's view: the worker writes as the key would (apps/jobs/kinds.py).
        submitted = await runtime.jobs.submit(
            JobKind.ingest, params={"visibility": visibility.to_json(), "collections": collections},
            payloads=payloads, total=len(payloads), owner=key.id,
            idempotency=(scope, idempotency_key, request_hash) if idempotency_key else None)
    except IdempotencyConflictError as exc:
        raise HTTPException(422, str(exc)) from None
    except QuotaExceededError as exc:
        raise HTTPException(429, str(exc)) from None
    if submitted.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    response.headers["Location"] = f"/api/v1/jobs/{submitted.job_id}"
    status = submitted.status
    if wait and not batch and received <= runtime.settings.wait_limit_bytes:
        job = await runtime.jobs.wait(submitted.job_id, _WAIT_S)
        if job is not None and job.status is JobStatus.succeeded and job.result and job.result["documents"]:
            outcome = IngestOut.model_validate(job.result["documents"][0])
            response.status_code = 201 if outcome.status == "created" else 200
            return outcome.model_dump()
        if job is not None and job.error_kind in _FAILED_STATUS:
            raise HTTPException(_FAILED_STATUS[job.error_kind], job.error or job.error_kind)
        status = job.status if job is not None else status  # still running, or failed on our side: follow Location
    response.status_code = 202
    return JobAccepted(job_id=submitted.job_id, status=status).model_dump()


_WAIT_S = 60.0
_ACCEPTED = {202: {"description": "accepted: follow `Location` to the job", "model": JobAccepted},
             200: {"description": "with ?wait=true: unchanged, updated (new metadata) or replaced", "model": IngestOut},
             201: {"description": "with ?wait=true: created", "model": IngestOut},
             429: {"description": "this key already has JOB_MAX_QUEUED_PER_KEY queued or running jobs"}}
WaitQuery = Annotated[bool, Query(description="wait (up to 60 s) for a small request (body up to WAIT_LIMIT_BYTES, "
                                              "256 KiB) and answer 201/200 with the document instead of 202")]
IdempotencyHeader = Annotated[str | None, Header(alias="Idempotency-Key", max_length=200)]


@router.post("/documents", status_code=202, openapi_extra=_UPLOAD_SCHEMA, responses=_ACCEPTED,
             summary="Ingest a document (JSON text or a file upload) as a job")
async def create_document(request: Request, response: Response, runtime: RuntimeDep, key: WriteKey,
                          visibility: VisibilityDep, wait: WaitQuery = False,
                          idempotency_key: IdempotencyHeader = None) -> Any:
    return await _accept(request, response, runtime, key, visibility, idempotency_key, wait, batch=False)


@router.post("/documents/batch", status_code=202, openapi_extra=_BATCH_SCHEMA, responses={202: _ACCEPTED[202], 429: _ACCEPTED[429]},
             summary="Ingest several documents or files in one job")
async def create_documents(request: Request, response: Response, runtime: RuntimeDep, key: WriteKey,
                           visibility: VisibilityDep, idempotency_key: IdempotencyHeader = None) -> Any:
    return await _accept(request, response, runtime, key, visibility, idempotency_key, wait=False, batch=True)


@router.get("/documents", response_model=DocumentPage, summary="List documents, newest first")
async def list_documents(
    session: SessionDep,
    _: ReadKey,
    visibility: VisibilityDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    language: Annotated[str | None, Query(pattern="^(en|ko)$")] = None,
    taxonomy_path: Annotated[str | None, Query(max_length=1000)] = None,
    collection: Annotated[str | None, Query(max_length=64, description="only this collection's")] = None,
) -> DocumentPage:
    page = await catalog.page(session, visibility, limit, offset, language, taxonomy_path, collection)
    return DocumentPage(items=[operations.document_out(d) for d in page.items], total=page.total, limit=limit,
                        offset=offset)


async def _get(session: AsyncSession, document_id: str, visibility: Visibility) -> catalog.DocumentRecord:
    """The document the key may see (every door's lookup); another, hidden or missing, is a 404."""
    try:
        return await operations.find_document(session, document_id, visibility)
    except DoorError as exc:
        raise exc.to_http() from None


@router.get("/documents/{document_id}", response_model=DocumentOut, summary="One document's metadata")
async def get_document(document_id: str, session: SessionDep, _: ReadKey, visibility: VisibilityDep) -> DocumentOut:
    return operations.document_out(await _get(session, document_id, visibility))


@router.get("/documents/{document_id}/chunks", response_model=list[ChunkOut], summary="A document's chunks in order")
async def get_chunks(document_id: str, session: SessionDep, _: ReadKey, visibility: VisibilityDep) -> list[ChunkOut]:
    await _get(session, document_id, visibility)
    return [ChunkOut.model_validate(c, from_attributes=True)
            for c in await catalog.chunks(session, document_id, visibility)]


@router.delete("/documents/{document_id}", status_code=204, summary="Delete a document with its chunks and vectors")
async def delete_document(document_id: str, runtime: RuntimeDep, _: WriteKey, visibility: VisibilityDep) -> Response:
    if not await runtime.ingestion.delete(document_id, visibility):
        raise HTTPException(404, f"no document with id {document_id!r}")
    return Response(status_code=204)


@router.get("/taxonomy/tree", response_model=list[TaxonomyNode], summary="Taxonomy with document counts")
async def taxonomy_tree(session: SessionDep, _: ReadKey, visibility: VisibilityDep) -> list[TaxonomyNode]:
    return [TaxonomyNode.model_validate(n, from_attributes=True) for n in await catalog.taxonomy(session, visibility)]
