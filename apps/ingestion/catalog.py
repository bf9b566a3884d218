"""Reading the corpus as documents: pages, one document, its chunks, counts and the taxonomy tree.

Each function runs in the caller's session (a request's, from `apps.api.deps.SessionDep`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from apps.core.models import Chunk, Document


@dataclass
class TaxonomyNode:
    name: str
    path: str
    document_count: int
    children: list[TaxonomyNode] = field(default_factory=list)


@dataclass(frozen=True)
class DocumentPage:
    items: list[Document]
    total: int


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


async def page(session: AsyncSession, limit: int, offset: int, language: str | None = None,
               taxonomy_path: str | None = None) -> DocumentPage:
    """Newest first; `taxonomy_path` matches the path and everything below it."""
    query = select(Document)
    if language:
        query = query.where(Document.language == language)
    if taxonomy_path:
        path = "/".join(s for s in taxonomy_path.split("/") if s)
        query = query.where((Document.taxonomy_path == path)
                            | Document.taxonomy_path.startswith(path + "/", autoescape=True))
    total = (await session.execute(select(func.count()).select_from(query.subquery()))).scalar_one()
    rows = (await session.execute(
        query.order_by(Document.created_at.desc(), Document.id).limit(limit).offset(offset)
    )).scalars().all()
    return DocumentPage(list(rows), int(total))


async def get(session: AsyncSession, document_id: str) -> Document | None:
    return await session.get(Document, document_id)


async def chunks(session: AsyncSession, document_id: str) -> list[Chunk]:
    return list((await session.execute(
        select(Chunk).where(Chunk.document_id == document_id).order_by(Chunk.ordinal)
    )).scalars())


async def taxonomy(session: AsyncSession) -> list[TaxonomyNode]:
    counts = (await session.execute(
        select(Document.taxonomy_path, func.count()).group_by(Document.taxonomy_path)
    )).all()
    return taxonomy_tree([(p, int(c)) for p, c in counts])


async def counts(session: AsyncSession) -> dict[str, int]:
    return {
        "documents": (await session.execute(select(func.count()).select_from(Document))).scalar_one(),
        "chunks": (await session.execute(select(func.count()).select_from(Chunk))).scalar_one(),
    }
