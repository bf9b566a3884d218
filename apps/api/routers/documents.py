"""Documents: ingest (JSON or file upload, with idempotency keys), list, read, chunks, delete; taxonomy."""

from __future__ import annotations

import hashlib
import json
from typing import Annotated, Any

from fastapi import APIRouter, Header, HTTPException, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.datastructures import UploadFile

from apps.api.deps import ReadKey, RuntimeDep, SessionDep, WriteKey
from apps.api.schemas import ChunkOut, DocumentIn, DocumentOut, DocumentPage, IngestOut, TaxonomyNode
from apps.core.idempotency import IdempotencyConflictError, StoredResponse
from apps.core.models import Document
from apps.ingestion import catalog
from apps.ingestion.documents import SourceDocument
from apps.ingestion.errors import EmbeddingMismatchError, IngestError
from apps.ingestion.loaders import SUPPORTED_SUFFIXES
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
                    },
                }
            },
        },
    }
}


def _invalid(field: str, message: str) -> RequestValidationError:
    return RequestValidationError([{"loc": ("body", field), "msg": message, "type": "value_error"}])


def _from_model(body: DocumentIn) -> SourceDocument:
    return SourceDocument(
        text=body.text, title=body.title, external_id=body.external_id, source_url=body.source_url,
        taxonomy_path=body.taxonomy_path or "", metadata=body.metadata or {},  # type: ignore[arg-type]
        origin=body.external_id or "request body",
    )


async def _parse(request: Request, runtime: Runtime) -> tuple[SourceDocument, str]:
    """The document in the request and a hash of its meaning (not its bytes: multipart boundaries vary)."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "application/json":
        try:
            payload = json.loads(await request.body())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise HTTPException(400, f"malformed JSON body: {exc}") from None
        try:
            body = DocumentIn.model_validate(payload)
        except ValidationError as exc:
            raise RequestValidationError(
                [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False, include_context=False)]
            ) from None
        canonical = json.dumps(body.model_dump(), sort_keys=True, ensure_ascii=False)
        return _from_model(body), hashlib.sha256(canonical.encode()).hexdigest()
    if content_type == "multipart/form-data":
        form = await request.form()
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise _invalid("file", "a file field is required")
        data = await upload.read()
        fields = {k: v for k, v in form.items() if isinstance(v, str)}
        try:
            metadata = json.loads(fields.get("metadata") or "{}")
        except json.JSONDecodeError:
            raise _invalid("metadata", "must be a JSON object") from None
        if not isinstance(metadata, dict):
            raise _invalid("metadata", "must be a JSON object")
        try:
            documents = await runtime.parser.parse(
                upload.filename or "upload", data, runtime.settings.max_document_bytes,
                title=fields.get("title") or None, external_id=fields.get("external_id") or None,
                source_url=fields.get("source_url") or None, taxonomy_path=fields.get("taxonomy_path"),
                metadata=metadata,
            )
        except IngestError as exc:
            raise HTTPException(422, str(exc)) from None
        if len(documents) != 1:
            raise HTTPException(422, f"{upload.filename}: holds {len(documents)} documents; upload one per request "
                                     "or use `dtrag ingest` for corpora")
        digest = hashlib.sha256()
        digest.update((upload.filename or "").encode() + b"\0" + data)
        digest.update(json.dumps(fields, sort_keys=True).encode())
        return documents[0], digest.hexdigest()
    raise HTTPException(415, "send application/json or multipart/form-data")


@router.post("/documents", response_model=IngestOut, status_code=201, openapi_extra=_UPLOAD_SCHEMA,
             summary="Ingest a document (JSON text or a file upload)",
             responses={200: {"description": "unchanged or replaced", "model": IngestOut}})
async def create_document(
    request: Request,
    response: Response,
    runtime: RuntimeDep,
    key: WriteKey,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key", max_length=200)] = None,
) -> Any:
    document, request_hash = await _parse(request, runtime)
    if idempotency_key:
        try:
            previous = await runtime.idempotency.replay(key.id, idempotency_key, request_hash)
        except IdempotencyConflictError as exc:
            raise HTTPException(422, str(exc)) from None
        if previous is not None:
            response.status_code = previous.status_code
            response.headers["Idempotent-Replayed"] = "true"
            return previous.body
    try:
        report = await runtime.ingestion.ingest([document])
    except IngestError as exc:
        raise HTTPException(422, str(exc)) from None
    except EmbeddingMismatchError as exc:
        raise HTTPException(409, str(exc)) from None
    outcome = report.outcomes[0]
    result = IngestOut(document_id=outcome.document_id, status=outcome.status,  # type: ignore[arg-type]
                       chunks=outcome.chunks)
    response.status_code = 201 if outcome.status == "created" else 200
    if idempotency_key:
        await runtime.idempotency.record(key.id, idempotency_key, request_hash,
                                         StoredResponse(response.status_code, result.model_dump()))
    return result


@router.get("/documents", response_model=DocumentPage, summary="List documents, newest first")
async def list_documents(
    session: SessionDep,
    _: ReadKey,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    language: Annotated[str | None, Query(pattern="^(en|ko)$")] = None,
    taxonomy_path: Annotated[str | None, Query(max_length=1000)] = None,
) -> DocumentPage:
    page = await catalog.page(session, limit, offset, language, taxonomy_path)
    return DocumentPage(items=[_document_out(d) for d in page.items], total=page.total, limit=limit, offset=offset)


def _document_out(d: Document) -> DocumentOut:
    return DocumentOut.model_validate({**{c: getattr(d, c) for c in DocumentOut.model_fields if c != "metadata"},
                                       "metadata": d.metadata_ or {}})


async def _get(session: AsyncSession, document_id: str) -> Document:
    doc = await catalog.get(session, document_id)
    if doc is None:
        raise HTTPException(404, f"no document with id {document_id!r}")
    return doc


@router.get("/documents/{document_id}", response_model=DocumentOut, summary="One document's metadata")
async def get_document(document_id: str, session: SessionDep, _: ReadKey) -> DocumentOut:
    return _document_out(await _get(session, document_id))


@router.get("/documents/{document_id}/chunks", response_model=list[ChunkOut], summary="A document's chunks in order")
async def get_chunks(document_id: str, session: SessionDep, _: ReadKey) -> list[ChunkOut]:
    await _get(session, document_id)
    return [ChunkOut.model_validate(c, from_attributes=True) for c in await catalog.chunks(session, document_id)]


@router.delete("/documents/{document_id}", status_code=204, summary="Delete a document with its chunks and vectors")
async def delete_document(document_id: str, runtime: RuntimeDep, _: WriteKey) -> Response:
    if not await runtime.ingestion.delete(document_id):
        raise HTTPException(404, f"no document with id {document_id!r}")
    return Response(status_code=204)


@router.get("/taxonomy/tree", response_model=list[TaxonomyNode], summary="Taxonomy with document counts")
async def taxonomy_tree(session: SessionDep, _: ReadKey) -> list[TaxonomyNode]:
    return [TaxonomyNode.model_validate(n, from_attributes=True) for n in await catalog.taxonomy(session)]
