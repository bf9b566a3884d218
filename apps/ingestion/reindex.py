"""Keeping the corpus in the configured embedding space and Korean analysis: the check ingestion and
serving run before trusting the corpus, and `dtrag reindex`, which brings a corpus built with another
model or analyser over, a page per transaction, resumably."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from apps.ingestion.chunking import embed_input
from apps.ingestion.errors import AnalyzerMismatchError, EmbeddingMismatchError
from apps.search.embeddings.base import EmbeddingProvider
from apps.search.stores.base import Store
from apps.search.stores.corpus import EmbeddingSpace, StoredChunk
from apps.text.analyzer import Analyzer


class Reindexer:
    def __init__(self, store: Store, embedder: EmbeddingProvider, analyzer: Analyzer) -> None:
        self.store = store
        self.embedder = embedder
        self.analyzer = analyzer
        self._indexed_dims: set[int] = set()

    @property
    def space(self) -> EmbeddingSpace:
        return EmbeddingSpace(self.embedder.name, self.embedder.dim)

    async def check_compatible(self) -> None:
        """Refuse to mix models or analysers: the corpus's vectors and the configured model's must be one
        space, and its lexical index must come from the configured Korean analyser. Also makes sure the
        model's dimension has its vector index on this backend."""
        await self.embedder.ready()
        corpus = await self.store.corpus_identity()
        if corpus.space is not None and corpus.space != self.space:
            raise EmbeddingMismatchError(
                f"the database holds {corpus.space.model} vectors (dim {corpus.space.dim}) but the configured "
                f"model is {self.embedder.name} (dim {self.embedder.dim}); run `dtrag reindex` first"
            )
        if corpus.analyzer is not None and corpus.analyzer != self.analyzer.korean:
            raise AnalyzerMismatchError(
                f"the lexical index was built with the {corpus.analyzer} Korean analyser but KOREAN_ANALYZER is "
                f"{self.analyzer.korean}; run `dtrag reindex` first"
            )
        if self.embedder.dim not in self._indexed_dims:
            await self.store.ensure_vector_index(self.embedder.dim)
            self._indexed_dims.add(self.embedder.dim)

    async def reanalyse(self, page_size: int = 256) -> int:
        """Rebuild the lexical index with the configured Korean analyser when the corpus was built with
        another; the analyser is recorded once every chunk is done, so an interrupted run starts over
        (cheap next to embedding)."""
        if (await self.store.corpus_identity()).analyzer in (None, self.analyzer.korean):
            return 0
        done, after = 0, -1
        while page := await self.store.chunk_page(after, page_size):
            tokens = await asyncio.to_thread(self._analyse, page)
            await self.store.replace_lexical([(c.id, t) for c, t in zip(page, tokens)])
            done += len(page)
            after = page[-1].id
        await self.store.set_lexical_analyzer(self.analyzer.korean)
        return done

    def _analyse(self, chunks: Sequence[StoredChunk]) -> list[tuple[str, ...]]:
        return [self.analyzer.tokens(embed_input(c.title, c.text)) for c in chunks]

    async def reindex(self, page_size: int = 256, on_progress: Callable[[int, int], None] | None = None) -> int:
        """Re-embed every chunk whose vector is not from the configured model (and re-analyse, see
        `reanalyse`). Chunks already on this model are skipped, so an interrupted reindex resumes."""
        await self.embedder.ready()
        await self.reanalyse()
        await self.store.ensure_vector_index(self.embedder.dim)
        space = self.space
        total = await self.store.count_chunks(outside=space)
        done, after = 0, -1
        while page := await self.store.chunk_page(after, page_size, outside=space):
            vectors = await self.embedder.embed_passages([embed_input(c.title, c.text) for c in page])
            await self.store.replace_embeddings([(c.id, v) for c, v in zip(page, vectors)], space)
            done += len(page)
            after = page[-1].id
            if on_progress:
                on_progress(done, total)
        return done
