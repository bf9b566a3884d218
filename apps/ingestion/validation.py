"""The one check of a document's fields, whichever way it arrived: a JSON body (`DocumentIn` extends
`DocumentFields`), a multipart upload's form fields, a parsed file, a `dtrag ingest` file or a BEIR
corpus line (`checked`, which ingestion runs on every document before anything is written).

What a caller sent over a limit is refused (the API answers 422, ingestion raises `IngestError`
naming the input). A title a parser found (an HTML <title>, a Markdown heading, a PDF's or a text
file's name, a BEIR title) is cut to the limit instead, since nobody chose it: it is prepended to,
analysed with and embedded with every chunk, and stored with the document.
"""

from __future__ import annotations

import logging
import re
from dataclasses import replace
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from apps.core.visibility import COLLECTION_NAME, DEFAULT_COLLECTION, GROUP_NAME
from apps.ingestion.documents import SourceDocument, normalise_taxonomy
from apps.ingestion.errors import IngestError

log = logging.getLogger(__name__)

TITLE_MAX_CHARS = 1000
EXTERNAL_ID_MAX_CHARS = 500  # documents.external_id is VARCHAR(512); PostgreSQL enforces it
SOURCE_URL_MAX_CHARS = 2000
TAXONOMY_MAX_CHARS = 1000
METADATA_MAX_DEPTH = 16  # deeper JSON is a mistake or an attack, never a filterable value
METADATA_KEY = re.compile(r"^[A-Za-z0-9_.\-]{1,100}$")
ACCESS_GROUPS_MAX = 50
# Only web links from callers: a `javascript:` or `data:` source_url would run in whatever renders it.
# Files that `dtrag ingest` reads carry their own `file:` URL.
WEB_SCHEMES = ("http", "https")
LOCAL_SCHEMES = (*WEB_SCHEMES, "file")


class DocumentFields(BaseModel):
    """What a caller may say about a document besides its text."""

    model_config = ConfigDict(extra="forbid")

    title: str = Field("", max_length=TITLE_MAX_CHARS)
    external_id: str | None = Field(None, max_length=EXTERNAL_ID_MAX_CHARS,
                                    description="your id; re-posting it replaces the document")
    source_url: str | None = Field(None, max_length=SOURCE_URL_MAX_CHARS, description="an http(s) URL")
    taxonomy_path: str | list[str] | None = Field(None, description="'ai/ml' or ['ai', 'ml']")
    metadata: dict[str, Any] | None = Field(None, description="JSON values under keys of letters, digits, '_.-'")
    collection: str | None = Field(None, description=f"the collection it belongs to (default {DEFAULT_COLLECTION!r}); "
                                                     "external_id is unique within it")
    access_groups: list[str] | None = Field(None, max_length=ACCESS_GROUPS_MAX,
                                            description="only keys carrying one of these groups see it (and admins)")

    @field_validator("collection")
    @classmethod
    def _collection(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        if not COLLECTION_NAME.match(value.strip()):
            raise ValueError("must be 1-64 of a-z, 0-9, '_', '.', '-', starting with a letter or digit")
        return value.strip()

    @field_validator("access_groups")
    @classmethod
    def _access_groups(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        for group in value:
            if not GROUP_NAME.match(group):
                raise ValueError(f"group {group[:120]!r} must be 1-100 of letters, digits, '_', '.', ':', '@', '-'")
        return sorted(set(value))

    @field_validator("source_url")
    @classmethod
    def _source_url(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None or not value.strip():
            return None
        schemes = (info.context or {}).get("url_schemes", WEB_SCHEMES)
        parts = urlsplit(value.strip())
        if parts.scheme.lower() not in schemes or (parts.scheme.lower() != "file" and not parts.netloc):
            raise ValueError(f"must be an absolute {' or '.join(schemes)} URL")
        return value.strip()

    @field_validator("taxonomy_path")
    @classmethod
    def _taxonomy(cls, value: str | list[str] | None) -> str | None:
        if value is None:
            return None
        if isinstance(value, list) and any("/" in s for s in value):
            raise ValueError("taxonomy segments must not contain '/'")
        joined = normalise_taxonomy(value)
        if len(joined) > TAXONOMY_MAX_CHARS:
            raise ValueError(f"taxonomy path is longer than {TAXONOMY_MAX_CHARS} characters")
        return joined or None

    @field_validator("metadata")
    @classmethod
    def _metadata(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is None:
            return None
        for key in value:
            if not METADATA_KEY.match(key):
                raise ValueError(f"metadata key {key[:120]!r} must be 1-100 characters of letters, digits, "
                                 "'_', '.', '-'")
        if _depth(value) > METADATA_MAX_DEPTH:
            raise ValueError(f"metadata is nested deeper than {METADATA_MAX_DEPTH} levels")
        return value


def _depth(value: Any) -> int:
    """How deep JSON containers nest, without recursion; stops counting past the limit."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        deepest = max(deepest, depth)
        if deepest > METADATA_MAX_DEPTH:
            break
        stack.extend((child, depth + 1) for child in children)
    return deepest


def describe(error: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'document'}: {e['msg']}"
                     for e in error.errors(include_url=False))


def checked(doc: SourceDocument) -> SourceDocument:
    """`doc` with its fields checked by `DocumentFields` and normalised, a title over the limit cut to
    it; raises `IngestError` naming the input for anything else over a limit."""
    title = doc.title
    if len(title) > TITLE_MAX_CHARS:
        log.warning("title cut to the limit", extra={"origin": doc.origin, "title_chars": len(title),
                                                     "limit": TITLE_MAX_CHARS})
        title = title[: TITLE_MAX_CHARS - 1].rstrip() + "…"
    try:
        fields = DocumentFields.model_validate(
            {"title": title, "external_id": doc.external_id, "source_url": doc.source_url,
             "taxonomy_path": doc.taxonomy_path, "metadata": doc.metadata, "collection": doc.collection,
             "access_groups": list(doc.access_groups)},
            context={"url_schemes": LOCAL_SCHEMES})
    except ValidationError as exc:
        raise IngestError(doc.origin, describe(exc)) from None
    return replace(doc, title=title, source_url=fields.source_url, taxonomy_path=fields.taxonomy_path or "",
                   metadata=fields.metadata or {}, collection=fields.collection or DEFAULT_COLLECTION,
                   access_groups=tuple(fields.access_groups or ()))
