"""The visibility predicate, as a property (SPEC-ACCESS-001): random documents in random collections with
random access groups, random viewers; every hit of every search satisfies the predicate computed here,
independently of `apps.core.visibility`, and a dense search never comes back short of what it may see
(on PostgreSQL both ways: exact over a small scope, and the HNSW walk with its fallback)."""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as examples
from hypothesis import strategies as st

from apps.core.config import Settings
from apps.core.visibility import Visibility
from apps.ingestion.documents import SourceDocument
from apps.runtime import Runtime, build_runtime
from apps.search.types import SearchFilters

COLLECTIONS = ("c0", "c1", "c2")
GROUPS = ("g0", "g1", "g2")
WORDS = ("vitamin", "bone", "sunlight", "database", "index", "query", "learning", "model", "tea", "river")


@dataclass(frozen=True)
class Doc:
    collection: str
    groups: frozenset[str]
    words: tuple[str, ...]


@dataclass(frozen=True)
class Viewer:
    collections: frozenset[str] | None
    groups: frozenset[str] | None


def sees(viewer: Viewer, doc: Doc) -> bool:
    """The predicate as the specification states it, written apart from the code under test."""
    in_collection = viewer.collections is None or doc.collection in viewer.collections
    opened = viewer.groups is None or not doc.groups or not doc.groups.isdisjoint(viewer.groups)
    return in_collection and opened


docs = st.lists(st.builds(Doc, st.sampled_from(COLLECTIONS), st.frozensets(st.sampled_from(GROUPS), max_size=2),
                          st.lists(st.sampled_from(WORDS), min_size=2, max_size=6).map(tuple)), min_size=1, max_size=6)
viewers = st.lists(st.builds(Viewer, st.none() | st.frozensets(st.sampled_from(COLLECTIONS), min_size=1),
                             st.none() | st.frozensets(st.sampled_from(GROUPS))), min_size=1, max_size=4)
queries = st.lists(st.sampled_from(WORDS), min_size=1, max_size=3).map(" ".join)


class Corpus:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.known: dict[str, Doc] = {}  # document id -> what it was ingested as
        self.counter = itertools.count()

    async def add(self, batch: list[Doc]) -> None:
        sources = [SourceDocument(text=" ".join(d.words) + f" token{n}", external_id=f"doc{n}", collection=d.collection,
                                  access_groups=tuple(sorted(d.groups)))
                   for d, n in zip(batch, self.counter)]
        report = await self.runtime.ingestion.ingest(sources)
        for outcome, d in zip(report.outcomes, batch):
            self.known[outcome.document_id] = d

    async def check(self, viewer: Viewer, query: str, top_k: int) -> None:
        visibility = Visibility(viewer.collections, viewer.groups)
        visible = {doc_id for doc_id, d in self.known.items() if sees(viewer, d)}
        for strategy in ("bm25", "dense", "hybrid_rrf"):
            result = await self.runtime.search.search(query, top_k, SearchFilters(visibility=visibility), strategy,
                                                      cacheable=True)
            found = [h.doc_id for h in result.hits]
            assert set(found) <= visible, (strategy, viewer, query)
            if strategy == "dense":  # every document has one chunk and a vector: never short
                assert len(found) == min(top_k, len(visible)), (viewer, len(found), len(visible))


@pytest.mark.parametrize("exact_max_chunks", [0, 20_000], ids=["walk", "exact"])
def test_every_hit_satisfies_the_predicate(settings: Settings, exact_max_chunks: int) -> None:
    if exact_max_chunks == 0 and settings.is_sqlite:
        pytest.skip("the HNSW walk is PostgreSQL's")
    loop = asyncio.new_event_loop()
    runtime = build_runtime(settings.model_copy(update={"dense_exact_max_chunks": exact_max_chunks}))
    corpus = Corpus(runtime)

    async def setup() -> None:
        for name in COLLECTIONS:
            await runtime.collections.ensure(name)

    @examples(max_examples=12, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
    @given(batch=docs, looks=viewers, query=queries, top_k=st.sampled_from([3, 10, 50]))
    def example(batch: list[Doc], looks: list[Viewer], query: str, top_k: int) -> None:
        async def run() -> None:
            await corpus.add(batch)
            for viewer in looks:
                await corpus.check(viewer, query, top_k)

        loop.run_until_complete(run())

    try:
        loop.run_until_complete(setup())
        example()
    finally:
        loop.run_until_complete(runtime.close())
        loop.close()
