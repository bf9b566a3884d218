"""Collections: named parts of the corpus, each document in exactly one. Keys are bound to collections by
name (apps/core/api_keys.py); what a key may see of them is its `Visibility` (apps/core/visibility.py).

A collection is deleted only empty, or with `cascade` together with its documents (chunks, vectors and
postings go with them), in one transaction that also moves the corpus generation, so no cached search
outlives it. `default` holds every document from before collections and is where a document without
one goes; it can be emptied but not deleted.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Select, and_, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from apps.core.corpus_state import bump_generation
from apps.core.db import write_transaction
from apps.core.models import Collection, Document, utcnow
from apps.core.visibility import COLLECTION_NAME, DEFAULT_COLLECTION, EVERYTHING, Visibility
from apps.ingestion.catalog import d, visible


class CollectionError(ValueError):
    pass


class UnknownCollectionError(CollectionError):
    def __init__(self, name: str) -> None:
        super().__init__(f"no collection named {name!r}")


class CollectionExistsError(CollectionError):
    def __init__(self, name: str) -> None:
        super().__init__(f"a collection named {name!r} exists already")


class CollectionNotEmptyError(CollectionError):
    def __init__(self, name: str, documents: int) -> None:
        super().__init__(f"collection {name!r} holds {documents} document(s); delete them first, or delete it "
                         "with ?cascade=true (its documents go with it)")


@dataclass(frozen=True)
class CollectionInfo:
    name: str
    description: str
    created_at: datetime
    documents: int
    chunks: int


def check_name(name: str) -> str:
    if not COLLECTION_NAME.match(name):
        raise CollectionError(f"collection name {name[:80]!r} must be 1-64 of a-z, 0-9, '_', '.', '-', starting "
                              "with a letter or digit")
    return name


def _counted(visibility: Visibility, dialect: str) -> Select:
    """Collections with the documents and chunks in them `visibility` may see."""
    return (select(Collection.name, Collection.description, Collection.created_at,
                   func.count(d.id).label("documents"), func.coalesce(func.sum(d.chunk_count), 0).label("chunks"))
            .outerjoin(d, and_(d.collection_id == Collection.id, visible(visibility, dialect)))
            .group_by(Collection.id, Collection.name, Collection.description, Collection.created_at)
            .order_by(Collection.name))


def _info(row) -> CollectionInfo:
    return CollectionInfo(row.name, row.description, row.created_at, int(row.documents), int(row.chunks))


class CollectionService:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def list(self, visibility: Visibility) -> list[CollectionInfo]:
        """The collections `visibility` may use, with the documents and chunks in them it may see."""
        query = _counted(visibility, self._engine.dialect.name)
        if visibility.collections is not None:
            query = query.where(Collection.name.in_(sorted(visibility.collections)))
        async with self._engine.connect() as conn:
            return [_info(r) for r in await conn.execute(query)]

    async def get(self, name: str, visibility: Visibility) -> CollectionInfo:
        """UnknownCollectionError for one that does not exist or that `visibility` may not use (alike)."""
        if not visibility.may_use(name):
            raise UnknownCollectionError(name)
        async with self._engine.connect() as conn:
            row = (await conn.execute(_counted(visibility, self._engine.dialect.name)
                                      .where(Collection.name == name))).first()
        if row is None:
            raise UnknownCollectionError(name)
        return _info(row)

    async def create(self, name: str, description: str = "") -> CollectionInfo:
        check_name(name)
        try:
            async with write_transaction(self._engine) as conn:
                await conn.execute(insert(Collection).values(name=name, description=description, created_at=utcnow()))
        except IntegrityError:
            raise CollectionExistsError(name) from None
        return await self.get(name, EVERYTHING)

    async def ensure(self, name: str, description: str = "") -> bool:
        """Create the collection unless it exists (the CLI's ingest); True when it was created."""
        check_name(name)
        try:
            await self.create(name, description)
        except CollectionExistsError:
            return False
        return True

    async def update(self, name: str, description: str) -> CollectionInfo:
        async with write_transaction(self._engine) as conn:
            changed = (await conn.execute(update(Collection).where(Collection.name == name)
                                          .values(description=description))).rowcount
        if not changed:
            raise UnknownCollectionError(name)
        return await self.get(name, EVERYTHING)

    async def delete(self, name: str, cascade: bool = False) -> int:
        """Delete the collection (and with `cascade` its documents); returns how many documents went."""
        if name == DEFAULT_COLLECTION:
            raise CollectionError(f"collection {DEFAULT_COLLECTION!r} cannot be deleted: documents sent without "
                                  "a collection go there (delete its documents instead)")
        async with write_transaction(self._engine) as conn:
            collection_id = (await conn.execute(select(Collection.id).where(Collection.name == name))).scalar()
            if collection_id is None:
                raise UnknownCollectionError(name)
            documents = int((await conn.execute(select(func.count()).select_from(Document)
                                                .where(Document.collection_id == collection_id))).scalar_one())
            if documents and not cascade:
                raise CollectionNotEmptyError(name, documents)
            if documents:
                await conn.execute(delete(Document).where(Document.collection_id == collection_id))
                await bump_generation(conn)
            await conn.execute(delete(Collection).where(Collection.id == collection_id))
        return documents

    async def document_counts(self) -> dict[str, tuple[int, int]]:
        """Every collection's (documents, chunks): the /metrics gauges and the dashboard."""
        async with self._engine.connect() as conn:
            return {r.name: (int(r.documents), int(r.chunks))
                    for r in await conn.execute(_counted(EVERYTHING, self._engine.dialect.name))}
