"""The case bank in memory: per collection, the cases' unit query vectors in one matrix and their analysed
terms in an inverted index, so finding the past questions close to a query is one matrix-vector product
and a walk over the query terms' postings (a brute-force scan: 10,000 cases of 384 dimensions take well
under a millisecond).

Each process keeps its own copy and brings it up to date from the database when it changed (checked at
most every CASES_REFRESH_S, and at once after this process wrote a case): only new or changed cases are
read again.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np

from apps.search.cases.store import CaseStore
from apps.search.cases.types import BankCase, Neighbour
from apps.search.embeddings.base import EmbeddingProvider
from apps.text.analyzer import Analyzer


def idf(document_frequency: int, count: int) -> float:
    """BM25's IDF, kept positive: a term every past question has still counts a little."""
    return math.log(1.0 + (count - document_frequency + 0.5) / (document_frequency + 0.5))


@dataclass
class CollectionIndex:
    """The cases of one collection, ready to be compared with a query."""

    name: str
    cases: list[BankCase]
    matrix: np.ndarray = field(init=False)
    postings: dict[str, np.ndarray] = field(init=False)
    document_frequency: dict[str, int] = field(init=False)
    term_weight: np.ndarray = field(init=False)  # per case, the IDF-weighted size of its terms
    # Per chunk, over the collection's cases: judged relevant, judged irrelevant.
    relevant_counts: Counter[int] = field(init=False)
    irrelevant_counts: Counter[int] = field(init=False)

    def __post_init__(self) -> None:
        dims = {c.vector.shape[0] for c in self.cases}
        dim = max(dims, key=lambda d: sum(c.vector.shape[0] == d for c in self.cases)) if dims else 0
        self.cases = [c for c in self.cases if c.vector.shape[0] == dim]
        self.matrix = (np.stack([c.vector for c in self.cases]).astype(np.float32) if self.cases
                       else np.zeros((0, dim), dtype=np.float32))
        positions: dict[str, list[int]] = {}
        for i, case in enumerate(self.cases):
            for term in case.terms:
                positions.setdefault(term, []).append(i)
        self.postings = {t: np.asarray(p, dtype=np.int64) for t, p in positions.items()}
        self.document_frequency = {t: len(p) for t, p in positions.items()}
        self.relevant_counts = Counter(cid for c in self.cases for cid in c.relevant)
        self.irrelevant_counts = Counter(cid for c in self.cases for cid in c.irrelevant)
        n = len(self.cases)
        self.term_weight = np.asarray([sum(idf(self.document_frequency[t], n) for t in c.terms) or 1.0
                                       for c in self.cases], dtype=np.float64)

    def idf(self, term: str) -> float:
        return idf(self.document_frequency.get(term, 0), len(self.cases))

    def lexical(self, terms: Iterable[str]) -> tuple[np.ndarray, np.ndarray]:
        """Per case: the IDF-weighted share of the query's terms it has, and of its terms the query has."""
        unique = set(terms)
        shared = np.zeros(len(self.cases))
        total = sum(self.idf(t) for t in unique) or 1.0
        for term in unique:
            postings = self.postings.get(term)
            if postings is not None:
                shared[postings] += self.idf(term)
        return shared / total, shared / self.term_weight

    def neighbours(self, terms: list[str], vector: np.ndarray | None, k: int, min_cosine: float,
                   min_lexical: float, exclude: int | None = None) -> tuple[list[Neighbour], bool]:
        """The k cases nearest by cosine among those close enough by both measures (and, with `vector`
        None, only whether any case passes the lexical check: the second value)."""
        if not self.cases:
            return [], False
        lexical_query, lexical_case = self.lexical(terms)
        plausible = lexical_query >= min_lexical
        if exclude is not None:
            plausible[exclude] = False
        if not plausible.any() or vector is None:
            return [], bool(plausible.any())
        if vector.shape[0] != self.matrix.shape[1]:
            return [], False
        cosine = self.matrix @ vector
        close = np.flatnonzero(plausible & (cosine >= min_cosine))
        order = close[np.argsort(-cosine[close], kind="stable")][:k]
        return [Neighbour(self.cases[i], float(cosine[i]), float(lexical_query[i]), float(lexical_case[i]), n)
                for n, i in enumerate(order)], True


class CaseBank:
    def __init__(self, store: CaseStore, embedder: EmbeddingProvider, analyzer: Analyzer, max_query_terms: int,
                 refresh_s: float) -> None:
        self.store = store
        self.embedder = embedder
        self.analyzer = analyzer
        self.max_query_terms = max_query_terms
        self.refresh_s = refresh_s
        self._cases: dict[int, BankCase] = {}
        self._versions: dict[int, datetime] = {}
        self._indexes: dict[str, CollectionIndex] = {}
        self._signature: tuple[int, int, str] | None = None
        self._checked = -math.inf
        self._lock = asyncio.Lock()

    def invalidate(self) -> None:
        """This process wrote cases: look at the database on the next use."""
        self._checked = -math.inf

    @property
    def size(self) -> int:
        return len(self._cases)

    async def terms(self, text: str) -> list[str]:
        return await self.analyzer.aquery_terms(text, self.max_query_terms)

    async def refresh(self) -> None:
        if time.monotonic() - self._checked < self.refresh_s:
            return
        async with self._lock:
            if time.monotonic() - self._checked < self.refresh_s:
                return
            signature = await self.store.signature()
            if signature != self._signature:
                await self._reload()
                self._signature = signature
            self._checked = time.monotonic()

    async def _reload(self) -> None:
        versions = await self.store.versions()
        changed = [i for i, updated in versions.items() if self._versions.get(i) != updated]
        gone = set(self._cases) - set(versions)
        loaded = await self.store.load(changed, self.embedder.name) if changed else []
        touched = {self._cases[i].collection for i in gone | set(changed) if i in self._cases}
        for i in gone | set(changed):
            self._cases.pop(i, None)
        for case in loaded:
            case.terms = frozenset(await self.terms(case.query))
            self._cases[case.id] = case
            touched.add(case.collection)
        self._versions = {i: versions[i] for i in versions}
        for name in touched:
            members = [c for c in self._cases.values() if c.collection == name]
            if members:
                self._indexes[name] = CollectionIndex(name, sorted(members, key=lambda c: c.id))
            else:
                self._indexes.pop(name, None)

    def indexes(self, collections: frozenset[str] | None) -> list[CollectionIndex]:
        """The indexes of the collections given (None: every one)."""
        return [index for name, index in sorted(self._indexes.items())
                if collections is None or name in collections]

    def index(self, collection: str) -> CollectionIndex | None:
        return self._indexes.get(collection)
