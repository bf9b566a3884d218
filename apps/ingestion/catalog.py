"""Reading the corpus as documents: pages, one document, its chunks, counts and the taxonomy tree.

Each function runs in the caller's session (a request's, from `apps.api.deps.SessionDep`). Every read of
documents takes the viewer's `Visibility` (no default): what it may not see is not there, so a hidden
document is "not found" exactly like a missing one."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import ColumnElement, bindparam, func, select, text, true
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from apps.core.models import Chunk, Collection, Document, DocumentGroup
from apps.core.visibility import Visibility
from apps.ingestion.documents import normalise_taxonomy

# The predicate's SQL names documents `d` (apps/core/visibility.py); the ORM reads them under that name.
d = aliased(Document, name="d")


@dataclass
class TaxonomyNode:
    name: str
    path: str
    document_count: int
    children: list[TaxonomyNode] = field(default_factory=list)


@dataclass(frozen=True)
class DocumentRecord:
    """A document with the name of its collection and its access groups."""

    document: Document
    collection: str
    access_groups: list[str]


@dataclass(frozen=True)
class DocumentPage:
    items: list[DocumentRecord]
    total: int


def visible(visibility: Visibility, dialect: str) -> ColumnElement[bool]:
    """The visibility predicate over `d`, as a clause for an ORM query."""
    where, params, expanding = visibility.sql(dialect)
    if not where:
        return true()
    return text(where).bindparams(*(bindparam(name, value=value, expanding=name in expanding)
                                    for name, value in params.items()))


def taxonomy_tree(counts: list[tuple[str, int]]) -> list[TaxonomyNode]:
    """Nodes with their subtree's document count, from (taxonomy path, documents) pairs; documents
    without a path are listed under "(none)"."""
    root = TaxonomyNode(name="", path="", document_count=0)
    index: dict[str, TaxonomyNode] = {"": root}
    for path, count in sorted(counts):
        prefix = ""
        for segment in [s for s in path.split("/") if s]:
            parent = prefix
            prefix = f"{prefix}/{segment}" if prefix else segment
            node = index.get(prefix)
            if node is None:
                node = TaxonomyNode(name=segment, path=prefix, document_count=0)
                index[parent].children.append(node)
                index[prefix] = node
            node.document_count += count
    unfiled = sum(c for p, c in counts if not p)
    return root.children + ([TaxonomyNode(name="(none)", path="", document_count=unfiled)] if unfiled else [])


async def _records(session: AsyncSession, rows: list[tuple[Document, str]]) -> list[DocumentRecord]:
    groups: dict[str, list[str]] = {}
    restricted = [doc.id for doc, _ in rows if doc.restricted]
    if restricted:
        found = await session.execute(select(DocumentGroup.document_id, DocumentGroup.name)
                                      .where(DocumentGroup.document_id.in_(restricted))
                                      .order_by(DocumentGroup.name))
        for document_id, name in found:
            groups.setdefault(document_id, []).append(name)
    return [DocumentRecord(doc, collection, groups.get(doc.id, [])) for doc, collection in rows]


async def page(session: AsyncSession, visibility: Visibility, limit: int, offset: int, language: str | None = None,
               taxonomy_path: str | None = None, collection: str | None = None) -> DocumentPage:
    """Newest first; `taxonomy_path` matches the path and everything below it."""
    query = (select(d, Collection.name).join(Collection, Collection.id == d.collection_id)
             .where(visible(visibility, session.bind.dialect.name)))
    if language:
        query = query.where(d.language == language)
    if taxonomy_path:
        path = normalise_taxonomy(taxonomy_path)
        query = query.where((d.taxonomy_path == path) | d.taxonomy_path.startswith(path + "/", autoescape=True))
    if collection:
        query = query.where(Collection.name == collection)
    total = (await session.execute(select(func.count()).select_from(query.subquery()))).scalar_one()
    rows = (await session.execute(query.order_by(d.created_at.desc(), d.id).limit(limit).offset(offset))).all()
    return DocumentPage(await _records(session, [(r[0], r[1]) for r in rows]), int(total))


async def get(session: AsyncSession, document_id: str, visibility: Visibility) -> DocumentRecord | None:
    """The document, or None when there is none or `visibility` does not allow it."""
    row = (await session.execute(
        select(d, Collection.name).join(Collection, Collection.id == d.collection_id)
        .where(d.id == document_id, visible(visibility, session.bind.dialect.name))
    )).first()
    return (await _records(session, [(row[0], row[1])]))[0] if row is not None else None


async def chunks(session: AsyncSession, document_id: str, visibility: Visibility) -> list[Chunk]:
    """A visible document's chunks in order (none for a document it may not see)."""
    return list((await session.execute(
        select(Chunk).join(d, d.id == Chunk.document_id)
        .where(Chunk.document_id == document_id, visible(visibility, session.bind.dialect.name))
        .order_by(Chunk.ordinal)
    )).scalars())


async def taxonomy(session: AsyncSession, visibility: Visibility) -> list[TaxonomyNode]:
    counts = (await session.execute(
        select(d.taxonomy_path, func.count()).where(visible(visibility, session.bind.dialect.name))
        .group_by(d.taxonomy_path)
    )).all()
    return taxonomy_tree([(p, int(c)) for p, c in counts])


async def counts(session: AsyncSession) -> dict[str, int]:
    """The whole corpus's totals (the operator's health view)."""
    return {
        "documents": (await session.execute(select(func.count()).select_from(Document))).scalar_one(),
        "chunks": (await session.execute(select(func.count()).select_from(Chunk))).scalar_one(),
    }
