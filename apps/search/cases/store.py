"""The case bank in SQL, the same on both backends: cases and their passages, the selector's versions, and
the log of requests served with case memory on.

A case belongs to one collection and goes with it; its passages go with their chunks (foreign keys with
ON DELETE CASCADE), so a deleted or re-ingested document leaves no passage behind in any case.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
from sqlalchemy import and_, delete, func, insert, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from apps.core.db import write_transaction
from apps.core.models import (
    Case,
    CaseChunk,
    CaseDecision,
    CaseSelectorVersion,
    Chunk,
    Collection,
    Document,
    utcnow,
)
from apps.core.visibility import Visibility
from apps.search.cases.types import BankCase, Passage
from apps.search.stores.base import bind, filter_clause
from apps.search.types import SearchFilters

_PAGE = 500  # bind parameters per statement stay well under SQLite's and asyncpg's caps


@dataclass(frozen=True)
class CaseWrite:
    collection_id: int
    ref: str
    origin: str  # feedback | import
    key_id: str | None
    query: str
    language: str
    strategy: str | None
    model: str
    vector: np.ndarray
    reward: float
    passages: tuple[Passage, ...]


def feedback_ref(key_id: str | None, request_id: str) -> str:
    """The ref of the cases one request's feedback makes (one per collection)."""
    return f"feedback:{key_id}:{request_id}"


def _aware(moment: datetime) -> datetime:
    """SQLite hands timestamps back without their zone; they were written in UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _pages(items: Sequence[Any]) -> list[Sequence[Any]]:
    return [items[i : i + _PAGE] for i in range(0, len(items), _PAGE)]


class CaseStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    @property
    def _insert(self) -> Any:
        return pg_insert if self.engine.dialect.name == "postgresql" else sqlite_insert

    # --- the bank ------------------------------------------------------------------------------------

    async def signature(self) -> tuple[int, int, str]:
        """Changes whenever a case is written, updated or deleted: (count, newest id, newest update)."""
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(func.count(), func.max(Case.id), func.max(Case.updated_at)))).one()
        return int(row[0]), int(row[1] or 0), str(row[2] or "")

    async def versions(self) -> dict[int, datetime]:
        """Every case's id and last update: what an in-memory bank compares itself with."""
        async with self.engine.connect() as conn:
            return {r.id: r.updated_at for r in await conn.execute(select(Case.id, Case.updated_at))}

    async def load(self, ids: Sequence[int], model: str) -> list[BankCase]:
        """The cases named, with their passages; only those whose vector is the model's given (a case
        embedded by another model is not comparable: `dtrag cases reembed` brings it over)."""
        cases: dict[int, BankCase] = {}
        async with self.engine.connect() as conn:
            for page in _pages(list(ids)):
                rows = await conn.execute(
                    select(Case.id, Collection.name, Case.query, Case.strategy, Case.vector, Case.reward,
                           Case.created_at, Case.updated_at)
                    .join(Collection, Collection.id == Case.collection_id)
                    .where(Case.id.in_(page), Case.model == model))
                for r in rows:
                    cases[r.id] = BankCase(r.id, r.name, r.query, r.strategy, np.frombuffer(r.vector, dtype=np.float32),
                                           float(r.reward), _aware(r.created_at), r.updated_at)
            passages: dict[int, list[Passage]] = {}
            for page in _pages(list(cases)):
                rows = await conn.execute(select(CaseChunk.case_id, CaseChunk.chunk_id, CaseChunk.judgement,
                                                 CaseChunk.shown_rank).where(CaseChunk.case_id.in_(page)))
                for r in rows:
                    passages.setdefault(r.case_id, []).append(Passage(r.chunk_id, float(r.judgement), r.shown_rank))
        for case_id, found in passages.items():
            cases[case_id].passages = tuple(sorted(found, key=lambda p: p.chunk_id))
        return list(cases.values())

    async def access(self, chunk_ids: Sequence[int], filters: SearchFilters,
                     visibility: Visibility) -> dict[int, tuple[bool, bool]]:
        """For each chunk that still exists: (visible to the viewer — the one predicate of
        apps/core/visibility.py —, and within the request's filters as well)."""
        if not chunk_ids:
            return {}
        dialect = self.engine.dialect.name
        visible, params, expanding = visibility.sql(dialect)
        admitted, filter_params, filter_expanding = filter_clause(filters, dialect, visibility)
        sql = (f"SELECT c.id, CASE WHEN {visible or '1 = 1'} THEN 1 ELSE 0 END AS visible, "
               f"CASE WHEN {admitted or '1 = 1'} THEN 1 ELSE 0 END AS admitted "
               "FROM chunks c JOIN documents d ON d.id = c.document_id WHERE c.id IN :ids")
        names = sorted({"ids", *expanding, *filter_expanding})
        out: dict[int, tuple[bool, bool]] = {}
        async with self.engine.connect() as conn:
            for page in _pages(list(chunk_ids)):
                rows = await conn.execute(bind(sql, names), {**params, **filter_params, "ids": list(page)})
                out.update({r.id: (bool(r.visible), bool(r.admitted)) for r in rows})
        return out

    async def collections_of(self, chunk_ids: Sequence[int]) -> dict[int, int]:
        """The collection id of each chunk that still exists."""
        out: dict[int, int] = {}
        async with self.engine.connect() as conn:
            for page in _pages(list(chunk_ids)):
                rows = await conn.execute(select(Chunk.id, Document.collection_id)
                                          .join(Document, Document.id == Chunk.document_id).where(Chunk.id.in_(page)))
                out.update({r.id: r.collection_id for r in rows})
        return out

    async def chunks_of_documents(self, collection_id: int, external_ids: Sequence[str]) -> dict[str, list[int]]:
        """The chunk ids of each document (by its external id) of a collection."""
        out: dict[str, list[int]] = {}
        async with self.engine.connect() as conn:
            for page in _pages(list(external_ids)):
                rows = await conn.execute(
                    select(Document.external_id, Chunk.id).join(Chunk, Chunk.document_id == Document.id)
                    .where(Document.collection_id == collection_id, Document.external_id.in_(page))
                    .order_by(Document.external_id, Chunk.ordinal))
                for r in rows:
                    out.setdefault(r.external_id, []).append(r.id)
        return out

    async def write(self, cases: Sequence[CaseWrite]) -> list[int]:
        """Create or replace cases (by collection and ref) with their passages, in one transaction; a case
        with no passage left is not written (and one that was is deleted)."""
        ids: list[int] = []
        now = utcnow()
        async with write_transaction(self.engine) as conn:
            for case in cases:
                existing = (await conn.execute(select(Case.id).where(
                    Case.collection_id == case.collection_id, Case.ref == case.ref))).scalar()
                if existing is not None:
                    await conn.execute(delete(CaseChunk).where(CaseChunk.case_id == existing))
                if not case.passages:
                    if existing is not None:
                        await conn.execute(delete(Case).where(Case.id == existing))
                    continue
                vector = np.asarray(case.vector, dtype=np.float32)
                values = {"origin": case.origin, "key_id": case.key_id, "query": case.query,
                          "language": case.language, "strategy": case.strategy, "model": case.model,
                          "dim": int(vector.shape[0]), "vector": vector.tobytes(), "reward": float(case.reward),
                          "updated_at": now}
                if existing is None:
                    existing = (await conn.execute(insert(Case).values(
                        collection_id=case.collection_id, ref=case.ref, created_at=now, **values)
                        .returning(Case.id))).scalar_one()
                else:
                    await conn.execute(update(Case).where(Case.id == existing).values(**values))
                await conn.execute(insert(CaseChunk), [
                    {"case_id": existing, "chunk_id": p.chunk_id, "shown_rank": p.shown_rank,
                     "judgement": p.judgement} for p in case.passages])
                ids.append(existing)
        return ids

    # --- operators: list, show, prune, wipe ----------------------------------------------------------

    async def collection_id(self, name: str) -> int | None:
        async with self.engine.connect() as conn:
            return (await conn.execute(select(Collection.id).where(Collection.name == name))).scalar()

    async def listing(self, collection: str | None = None, limit: int = 50, offset: int = 0) -> list[dict[str, Any]]:
        passages = (select(CaseChunk.case_id, func.count().label("passages"),
                           func.count().filter(CaseChunk.judgement > 0).label("relevant"),
                           func.count().filter(CaseChunk.judgement < 0).label("irrelevant"))
                    .group_by(CaseChunk.case_id).subquery())
        query = (select(Case.id, Collection.name.label("collection"), Case.origin, Case.query, Case.reward,
                        Case.strategy, Case.created_at, passages.c.passages, passages.c.relevant, passages.c.irrelevant)
                 .join(Collection, Collection.id == Case.collection_id)
                 .outerjoin(passages, passages.c.case_id == Case.id))
        if collection is not None:
            query = query.where(Collection.name == collection)
        async with self.engine.connect() as conn:
            rows = await conn.execute(query.order_by(Case.id.desc()).limit(limit).offset(offset))
            return [{**r._asdict(), "created_at": r.created_at.isoformat(), "passages": r.passages or 0,
                     "relevant": r.relevant or 0, "irrelevant": r.irrelevant or 0} for r in rows]

    async def get(self, case_id: int) -> dict[str, Any] | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(
                select(Case.id, Collection.name.label("collection"), Case.ref, Case.origin, Case.key_id, Case.query,
                       Case.language, Case.strategy, Case.model, Case.dim, Case.reward, Case.created_at,
                       Case.updated_at)
                .join(Collection, Collection.id == Case.collection_id).where(Case.id == case_id))).first()
            if row is None:
                return None
            passages = await conn.execute(
                select(CaseChunk.chunk_id, CaseChunk.judgement, CaseChunk.shown_rank, Document.id.label("doc_id"),
                       Document.external_id, Document.title)
                .join(Chunk, Chunk.id == CaseChunk.chunk_id).join(Document, Document.id == Chunk.document_id)
                .where(CaseChunk.case_id == case_id).order_by(CaseChunk.judgement.desc(), CaseChunk.chunk_id))
            return {**row._asdict(), "created_at": row.created_at.isoformat(), "updated_at": row.updated_at.isoformat(),
                    "passages": [p._asdict() for p in passages]}

    async def prune(self, older_than: datetime | None = None, collection_id: int | None = None) -> int:
        """Delete cases not updated since `older_than` (None: any age) and, whatever their age, cases with no
        passage left (their documents were deleted or replaced); returns how many."""
        condition = Case.id.not_in(select(CaseChunk.case_id))
        if older_than is not None:
            condition = or_(condition, Case.updated_at < older_than)
        if collection_id is not None:
            condition = and_(condition, Case.collection_id == collection_id)
        async with write_transaction(self.engine) as conn:
            return (await conn.execute(delete(Case).where(condition))).rowcount

    async def wipe(self, collection_id: int) -> int:
        async with write_transaction(self.engine) as conn:
            return (await conn.execute(delete(Case).where(Case.collection_id == collection_id))).rowcount

    async def sizes(self) -> dict[str, int]:
        """Cases per collection."""
        async with self.engine.connect() as conn:
            rows = await conn.execute(select(Collection.name, func.count(Case.id))
                                      .join(Case, Case.collection_id == Collection.id).group_by(Collection.name))
            return {r[0]: int(r[1]) for r in rows}

    # --- the selector's versions ---------------------------------------------------------------------

    async def latest_version(self) -> int:
        async with self.engine.connect() as conn:
            return int((await conn.execute(select(func.max(CaseSelectorVersion.version)))).scalar() or 0)

    async def selector(self, version: int) -> dict[str, Any] | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(CaseSelectorVersion.parameters)
                                      .where(CaseSelectorVersion.version == version))).first()
        return row.parameters if row is not None else None

    async def save_selector(self, based_on: int, parameters: dict[str, Any], examples: int,
                            detail: dict[str, Any]) -> int | None:
        """Store the next version after `based_on`; None when another worker stored one first (its batch
        update stands, this one is dropped)."""
        statement = self._insert(CaseSelectorVersion).values(
            version=based_on + 1, parameters=parameters, examples=examples, detail=detail,
            created_at=utcnow()).on_conflict_do_nothing()
        async with write_transaction(self.engine) as conn:
            inserted = (await conn.execute(statement)).rowcount
        return based_on + 1 if inserted else None

    async def selector_history(self, limit: int = 10) -> list[dict[str, Any]]:
        v = CaseSelectorVersion
        async with self.engine.connect() as conn:
            rows = await conn.execute(select(v.version, v.examples, v.detail, v.created_at)
                                      .order_by(v.version.desc()).limit(limit))
            return [{**r._asdict(), "created_at": r.created_at.isoformat()} for r in rows]

    # --- the decision log ----------------------------------------------------------------------------

    async def insert_decisions(self, conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
        # A client may reuse an X-Request-ID: the first decision under an id stands.
        await conn.execute(self._insert(CaseDecision).on_conflict_do_nothing(), rows)

    async def decision(self, request_id: str) -> Any | None:
        async with self.engine.connect() as conn:
            return (await conn.execute(select(CaseDecision).where(CaseDecision.request_id == request_id))).first()

    async def mark_rewarded(self, request_id: str) -> None:
        async with write_transaction(self.engine) as conn:
            await conn.execute(update(CaseDecision).where(CaseDecision.request_id == request_id)
                               .values(rewarded_at=utcnow()))

    async def rewarded_decisions(self, limit: int, since: datetime | None = None) -> list[Any]:
        """The newest decisions feedback joined (since `since`), with candidates the selector scored: logged
        outcomes."""
        d = CaseDecision
        query = (select(d.request_id, d.key_id, d.strategy, d.candidates, d.selector_version, d.created_at)
                 .where(d.rewarded_at.is_not(None)).order_by(d.created_at.desc()).limit(limit))
        if since is not None:
            query = query.where(d.created_at >= since)
        async with self.engine.connect() as conn:
            return list((await conn.execute(query)).all())

    async def judgements_of(self, refs: Sequence[str]) -> dict[str, dict[int, float]]:
        """Per case ref, the passages judged in its cases (a request's feedback makes one per collection)."""
        out: dict[str, dict[int, float]] = {}
        async with self.engine.connect() as conn:
            for page in _pages(list(refs)):
                rows = await conn.execute(select(Case.ref, CaseChunk.chunk_id, CaseChunk.judgement)
                                          .join(Case, Case.id == CaseChunk.case_id).where(Case.ref.in_(page)))
                for r in rows:
                    out.setdefault(r.ref, {})[r.chunk_id] = float(r.judgement)
        return out

    async def decision_counts(self, since: datetime) -> dict[str, int]:
        """Requests served with case memory on since `since`, and how many of them cases changed."""
        d = CaseDecision
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(func.count(), func.count().filter(d.changed))
                                      .where(d.created_at >= since))).one()
        return {"requests": int(row[0]), "changed": int(row[1])}

    async def prune_decisions(self, older_than: datetime) -> int:
        async with write_transaction(self.engine) as conn:
            return (await conn.execute(delete(CaseDecision).where(CaseDecision.created_at < older_than))).rowcount



    async def outside(self, model: str, limit: int) -> list[tuple[int, str]]:
        """Cases whose vector is another model's: (id, query)."""
        async with self.engine.connect() as conn:
            rows = await conn.execute(select(Case.id, Case.query).where(Case.model != model).order_by(Case.id)
                                      .limit(limit))
            return [(r.id, r.query) for r in rows]

    async def replace_vectors(self, model: str, vectors: Sequence[tuple[int, np.ndarray]]) -> None:
        async with write_transaction(self.engine) as conn:
            for case_id, vector in vectors:
                v = np.asarray(vector, dtype=np.float32)
                await conn.execute(update(Case).where(Case.id == case_id).values(
                    model=model, dim=int(v.shape[0]), vector=v.tobytes(), updated_at=utcnow()))
