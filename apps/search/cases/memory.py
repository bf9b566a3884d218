"""Case memory: cases from feedback and from imported judgements, the selector's batch updates, and what
operators do with the bank (list, show, prune, wipe, re-embed).

A case is written when feedback arrives for a request served with case memory on (joined by request id,
as the bandit does): the passages the request showed, each judged relevant (+1), irrelevant (-1) or
only shown (0), one case per collection they come from. Only passages the request showed can be judged
(a key cannot plant others), and only by the key that made the request; its feedback row is merged as it
changes (one per key and request), and the case follows it.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from apps.core import metrics
from apps.core.models import utcnow
from apps.core.periodic import Periodic
from apps.core.visibility import Visibility
from apps.search.cases.bank import CaseBank
from apps.search.cases.leg import CaseLeg
from apps.search.cases.model import SelectorParameters
from apps.search.cases.selector import Selector
from apps.search.cases.store import CaseStore, CaseWrite, feedback_ref
from apps.search.cases.training import TrainingLimits, batch_update
from apps.search.cases.types import Passage, Ranking
from apps.search.embeddings.base import EmbeddingProvider
from apps.search.service import SearchService
from apps.search.types import SearchFilters
from apps.text.language import detect_language

log = logging.getLogger(__name__)


class UnknownCollectionError(LookupError):
    pass


@dataclass(frozen=True)
class ImportReport:
    cases: int
    queries: int
    without_documents: int  # judged documents of no query were found in the collection
    missing_documents: int  # judged document ids not in the collection


def feedback_reward(feedback: dict[str, Any], relevant: set[int], irrelevant: set[int]) -> float:
    """The case's reward: the rating, else helpful as ±1, else +1 for a passage marked relevant, -1 for
    marks that are all irrelevant, 0 for nothing."""
    if feedback.get("rating") is not None:
        return float(feedback["rating"])
    if feedback.get("helpful") is not None:
        return 1.0 if feedback["helpful"] else -1.0
    return 1.0 if relevant else (-1.0 if irrelevant else 0.0)


class CaseMemory:
    def __init__(self, store: CaseStore, bank: CaseBank, selector: Selector, leg: CaseLeg, search: SearchService,
                 embedder: EmbeddingProvider, limits: TrainingLimits, *, train_every: int,
                 decisions_retention_days: float, maintenance_s: float = 3600.0) -> None:
        self.store = store
        self.bank = bank
        self.selector = selector
        self.leg = leg
        self.search = search
        self.embedder = embedder
        self.limits = limits
        self.train_every = train_every
        self.decisions_retention_days = decisions_retention_days
        self._written = 0
        self._training: set[asyncio.Task[Any]] = set()
        self._maintenance = Periodic("case-maintenance", maintenance_s, self.maintain)

    # --- cases from feedback and from judgements -----------------------------------------------------

    async def endpoint_of(self, key_id: str, request_id: str, wait: bool = True) -> str | None:
        """The endpoint of this key's request served with case memory on (feedback for it makes a case);
        None when there was none."""
        row = await self._decision(key_id, request_id, wait)
        return row.endpoint if row is not None else None

    async def _decision(self, key_id: str | None, request_id: str, wait: bool = True) -> Any | None:
        for attempt in range(2):
            await self.leg.flush()
            row = await self.store.decision(request_id)
            if row is not None:
                return row if row.key_id == key_id else None  # another key's request: as if there were none
            if not wait or attempt:
                return None
            await asyncio.sleep(self.leg.flush_interval_s * 2)  # another worker may not have flushed yet
        return None

    async def from_feedback(self, key_id: str | None, request_id: str, feedback: dict[str, Any],
                            wait: bool = True) -> list[int]:
        """Make (or bring up to date) the cases of one request from its merged feedback row; [] when the
        request was not served with case memory on, or not by this key, or the case could not be written
        (logged: the feedback itself stands, and the next feedback for the request writes it again).
        `wait`: give another worker's buffered decision row one flush interval to arrive."""
        try:
            return await self._from_feedback(key_id, request_id, feedback, wait)
        except Exception:  # noqa: BLE001 - a case is a by-product of feedback, never its failure
            log.exception("could not write the case of a request's feedback", extra={"request_id": request_id[:100]})
            return []

    async def _from_feedback(self, key_id: str | None, request_id: str, feedback: dict[str, Any],
                             wait: bool) -> list[int]:
        decision = await self._decision(key_id, request_id, wait)
        if decision is None:
            return []
        served = [int(cid) for cid in decision.served_chunk_ids]
        relevant = set(feedback.get("relevant_chunk_ids") or ()) & set(served)
        irrelevant = (set(feedback.get("irrelevant_chunk_ids") or ()) & set(served)) - relevant
        reward = feedback_reward(feedback, relevant, irrelevant)
        collections = await self.store.collections_of(served)
        by_collection: dict[int, list[Passage]] = {}
        for rank, chunk_id in enumerate(served, start=1):
            collection_id = collections.get(chunk_id)
            if collection_id is None:  # deleted since
                continue
            judgement = 1.0 if chunk_id in relevant else (-1.0 if chunk_id in irrelevant else 0.0)
            by_collection.setdefault(collection_id, []).append(Passage(chunk_id, judgement, rank))
        vector = await self.embedder.embed_query(decision.query)
        ids = await self.store.write([
            CaseWrite(collection_id, feedback_ref(key_id, request_id), "feedback", key_id, decision.query,
                      detect_language(decision.query), decision.strategy, self.embedder.name, vector, reward,
                      tuple(passages)) for collection_id, passages in sorted(by_collection.items())])
        await self.store.mark_rewarded(request_id)
        self.bank.invalidate()
        metrics.CASES_WRITTEN.labels(origin="feedback").inc(len(ids))
        self._written += len(ids)
        if self.train_every and self._written >= self.train_every:
            self._written = 0
            self._train_in_background()
        return ids

    async def import_judgements(self, collection: str, queries: dict[str, str], qrels: dict[str, dict[str, int]],
                                strategy: str | None = None, batch: int = 200) -> ImportReport:
        """Cases from BEIR-format judgements: each query's judged documents (score > 0 relevant, else
        irrelevant), every chunk of them. Re-importing a query replaces its case."""
        collection_id = await self.store.collection_id(collection)
        if collection_id is None:
            raise UnknownCollectionError(f"no collection {collection!r}")
        if strategy is not None:
            strategy = self.search.resolve(strategy).name
        wanted = sorted({doc for qid in qrels if qid in queries for doc in qrels[qid]})
        chunks = await self.store.chunks_of_documents(collection_id, wanted)
        writes: list[CaseWrite] = []
        written = without = 0
        for qid in sorted(q for q in qrels if q in queries):
            passages = [Passage(cid, 1.0 if score > 0 else -1.0, None)
                        for doc, score in sorted(qrels[qid].items()) for cid in chunks.get(doc, ())]
            if not passages:
                without += 1
                continue
            vector = await self.embedder.embed_query(queries[qid])
            writes.append(CaseWrite(collection_id, f"import:{qid}", "import", None, queries[qid],
                                    detect_language(queries[qid]), strategy, self.embedder.name, vector,
                                    1.0 if any(p.judgement > 0 for p in passages) else -1.0, tuple(passages)))
            if len(writes) >= batch:
                written += len(await self.store.write(writes))
                writes = []
        if writes:
            written += len(await self.store.write(writes))
        self.bank.invalidate()
        metrics.CASES_WRITTEN.labels(origin="import").inc(written)
        return ImportReport(written, sum(1 for q in qrels if q in queries), without,
                            sum(1 for doc in wanted if doc not in chunks))

    # --- the selector's batch update -----------------------------------------------------------------

    async def plain_ranking(self, query: str, strategy: str | None, collection: str) -> tuple[Ranking, str]:
        """The ranking the case leg would see for the query in the collection: a plain search at its depth."""
        chosen = self.search.resolve(strategy).name
        view = Visibility(frozenset({collection}), None)
        result = await self.search.search(query, top_k=self.search.depth(1), filters=SearchFilters(visibility=view),
                                          strategy=chosen)
        return Ranking.of_hits(result.hits), chosen

    async def train(self) -> dict[str, Any]:
        """One batch update; every worker reads the new version within CASES_REFRESH_S."""
        based_on = await self.store.latest_version()
        version, report = await batch_update(self.store, self.bank, self.plain_ranking, self.limits, based_on)
        metrics.CASE_SELECTOR_UPDATES.labels(outcome="stored" if version else "superseded").inc()
        await self.selector.refresh(force=True)
        return report

    async def reset_selector(self) -> int | None:
        """A new version with no model: the fixed rule everywhere until the next batch update."""
        based_on = await self.store.latest_version()
        version = await self.store.save_selector(based_on, SelectorParameters().to_json(), 0, {"reset": True})
        await self.selector.refresh(force=True)
        return version

    def _train_in_background(self) -> None:
        task = asyncio.create_task(self.train())
        self._training.add(task)
        task.add_done_callback(self._training.discard)
        task.add_done_callback(lambda t: t.cancelled() or t.exception() is None
                               or log.error("case selector batch update failed", exc_info=t.exception()))

    async def drain(self) -> None:
        while self._training:
            await asyncio.gather(*list(self._training), return_exceptions=True)

    # --- operators -----------------------------------------------------------------------------------

    async def collection_id(self, collection: str) -> int:
        found = await self.store.collection_id(collection)
        if found is None:
            raise UnknownCollectionError(f"no collection {collection!r}")
        return found

    async def prune(self, older_than_days: float | None = None, collection: str | None = None) -> int:
        collection_id = await self.collection_id(collection) if collection is not None else None
        older = utcnow() - timedelta(days=older_than_days) if older_than_days is not None else None
        pruned = await self.store.prune(older, collection_id)
        self.bank.invalidate()
        return pruned

    async def wipe(self, collection: str) -> int:
        wiped = await self.store.wipe(await self.collection_id(collection))
        self.bank.invalidate()
        return wiped

    async def reembed(self, batch: int = 200) -> int:
        """Vectors of the cases embedded by another model, from the configured one."""
        done = 0
        while rows := await self.store.outside(self.embedder.name, batch):
            vectors = [(case_id, await self.embedder.embed_query(query)) for case_id, query in rows]
            await self.store.replace_vectors(self.embedder.name, vectors)
            done += len(rows)
        self.bank.invalidate()
        return done

    async def summary(self, hours: float = 24.0) -> dict[str, Any]:
        """Bank size per collection, the selector's version, and over the window the share of requests
        served with case memory on whose ranking the cases changed (the hit rate)."""
        sizes = await self.store.sizes()
        counts = await self.store.decision_counts(utcnow() - timedelta(hours=hours))
        return {"cases": sum(sizes.values()), "by_collection": sizes,
                "selector_version": await self.store.latest_version(),
                "window_hours": hours, "requests": counts["requests"], "changed": counts["changed"],
                "hit_rate": round(counts["changed"] / counts["requests"], 4) if counts["requests"] else None}

    async def maintain(self) -> dict[str, int]:
        """Retention: decisions past CASES_DECISIONS_RETENTION_DAYS (they hold the questions asked), cases
        whose passages are all gone."""
        decisions = await self.store.prune_decisions(utcnow() - timedelta(days=self.decisions_retention_days))
        empty = await self.store.prune()
        if empty:
            self.bank.invalidate()
        return {"decisions": decisions, "empty_cases": empty}

    def start(self) -> None:
        self.leg.start()
        self._maintenance.start()

    async def stop(self) -> None:
        self._maintenance.stop()
        await self.drain()
        await self.leg.stop()
