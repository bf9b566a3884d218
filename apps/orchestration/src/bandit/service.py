"""The bandit in the request path: choose a strategy per query, log it, take feedback, learn.

    first look (BM25 leg) → state → π(·|state) → draw → search (reusing the BM25 leg) → log decision
    feedback (explicit, or implicit after the window) → replay buffer → batch update every N experiences
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from apps.core import metrics
from apps.core.config import Settings
from apps.core.db import write_transaction
from apps.core.models import utcnow
from apps.core.periodic import Periodic
from apps.core.visibility import effective
from apps.orchestration.src.bandit.decision_log import Decision, DecisionLog
from apps.orchestration.src.bandit.soft_q import SoftQLearning
from apps.orchestration.src.bandit.replay import ReplayBuffer
from apps.orchestration.src.bandit.state import encode_state
from apps.search.cases.types import CaseQuery
from apps.search.service import SearchService
from apps.search.strategies import BM25
from apps.search.types import Hit, SearchFilters, SearchResult

log = logging.getLogger(__name__)


class UnknownDecisionError(LookupError):
    pass


@dataclass(frozen=True)
class Retrieval:
    result: SearchResult
    decision: Decision | None  # None when the strategy was fixed or forced


@dataclass(frozen=True)
class FeedbackOutcome:
    request_id: str
    reward: float
    accepted: bool  # False: feedback for this request was already recorded (the first one stands)
    learned: bool  # True: the reward went into the replay buffer (False: an online update, or none)


def _viewer(filters: SearchFilters | None) -> dict[str, Any]:
    """Who searched and what they could see, kept with the decision: the log is per key and collection."""
    visibility = effective(filters.visibility if filters is not None else None)
    seen = sorted(visibility.collections) if visibility.collections is not None else ["*"]
    return {"key_id": visibility.key_id, "collections": seen}


def term_coverage(query_terms: list[str], hits: list[Hit], top: int = 3) -> float:
    """Share of the query's analysed terms found in the top hits' text: the implicit search reward."""
    if not query_terms or not hits:
        return 0.0
    text = " ".join(h.text.lower() for h in hits[:top])
    return sum(1 for t in query_terms if t in text) / len(query_terms)


def ndcg_of(served: list[int], relevant: set[int], k: int = 10) -> float:
    """Binary nDCG@k of a served chunk ranking against the chunks a user marked relevant."""
    if not relevant:
        return 0.0
    dcg = sum(1 / math.log2(i + 2) for i, cid in enumerate(served[:k]) if cid in relevant)
    ideal = sum(1 / math.log2(i + 2) for i in range(min(k, len(relevant))))
    return dcg / ideal


class StrategyBandit:
    def __init__(self, search: SearchService, learner: SoftQLearning, replay: ReplayBuffer, decisions: DecisionLog,
                 settings: Settings) -> None:
        unknown = [a for a in learner.arms if a not in search.strategies]
        if unknown:
            raise ValueError(f"BANDIT_ARMS names unknown strategies: {', '.join(unknown)}")
        self.search = search
        self.learner = learner
        self.replay = replay
        self.decisions = decisions
        self.settings = settings
        self._learning: set[asyncio.Task[Any]] = set()
        self._settler = Periodic("bandit-settle", min(60.0, max(1.0, settings.bandit_reward_window_s / 4)),
                                 self.settle)

    # --- serving ----------------------------------------------------------------------------------

    async def retrieve(self, query: str, top_k: int, filters: SearchFilters | None, *, request_id: str,
                       endpoint: str, strategy: str | None = None, use_bandit: bool = False,
                       replay: bool = False, variant: str = "legacy", cases: bool = False) -> Retrieval:
        """Search with a forced strategy, the bandit's choice (use_bandit) or the fixed default; `cases`:
        with case memory (the `neural_case_selector` flag), logged under the request id."""
        memory = CaseQuery(request_id, endpoint) if cases else None
        if strategy is not None or not use_bandit:
            return Retrieval(await self.search.search(query, top_k, filters, strategy, cacheable=True, cases=memory),
                             None)
        start = time.perf_counter()
        await self.learner.refresh()
        first_look = await self.search.first_look(query, top_k, filters)
        terms = await self.search.analyzer.aquery_terms(query, self.settings.max_query_terms)
        state = encode_state(query, terms, first_look)
        action, probabilities = self.learner.select(state, request_id)
        result = await self.search.search(query, top_k, filters, action, prefetched={BM25: first_look}, cases=memory)
        latency_ms = (time.perf_counter() - start) * 1000
        decision = Decision(
            request_id=request_id, endpoint=endpoint, state=state, action=action,
            probabilities={a: round(p, 6) for a, p in zip(self.learner.arms, probabilities)},
            policy_version=self.learner.version, variant=variant, latency_ms=round(latency_ms, 3),
            served_chunk_ids=[h.chunk_id for h in result.hits], replay=replay,
            **_viewer(filters),
        )
        decision.implicit_reward = self.reward(term_coverage(terms, result.hits), latency_ms, action)
        return Retrieval(result, decision)

    def commit(self, decision: Decision | None, quality: float | None = None) -> None:
        """Log a served decision; `quality` (e.g. answer groundedness) replaces the implicit base reward."""
        if decision is None:
            return
        if self.settings.bandit_implicit_reward == "none":
            decision.implicit_reward = None  # never settled: only explicit feedback teaches
        elif quality is not None:
            decision.implicit_reward = self.reward(quality, decision.latency_ms, decision.action)
        self.decisions.record(decision)

    def reward(self, quality: float, latency_ms: float, action: str | None = None) -> float:
        """Quality less the latency's cost and, for an arm that pays per search (a hosted reranker), its
        price: BANDIT_COST_PER_USD of reward per US dollar. A reranked arm's latency is in `latency_ms`."""
        strategy = self.search.strategies.get(action) if action else None
        price = strategy.cost_usd if strategy is not None else 0.0
        base = self.learner.calculate_reward(quality, latency_ms, self.settings.bandit_latency_cost)
        return round(base - self.settings.bandit_cost_per_usd * price, 6)

    # --- feedback and learning ----------------------------------------------------------------------

    async def feedback(self, request_id: str, *, rating: float | None = None, helpful: bool | None = None,
                       relevant_chunk_ids: list[int] | None = None, rater: str | None = None) -> FeedbackOutcome:
        """`rater`: the API key giving it, who may rate only its own requests (another's is unknown to it)."""
        row = await self.decisions.get(request_id)
        if row is None or (rater is not None and row.key_id != rater):
            raise UnknownDecisionError(f"no bandit decision was logged for request id {request_id!r}")
        if rating is not None:
            quality = rating
        elif helpful is not None:
            quality = 1.0 if helpful else -1.0
        else:
            quality = ndcg_of(list(row.served_chunk_ids), set(relevant_chunk_ids or ()))
        reward = self.reward(quality, row.latency_ms, row.action)
        feedback = {"rating": rating, "helpful": helpful, "relevant_chunk_ids": relevant_chunk_ids}
        learned = False
        async with write_transaction(self.decisions.engine) as conn:
            accepted = await self.decisions.claim_explicit(conn, request_id, reward, feedback)
            if accepted and row.replay:
                new_id = await self.replay.add(row.state, row.action, reward, request_id=request_id,
                                               propensity=float(row.probabilities.get(row.action, 0.0)), conn=conn)
                learned = True
            elif accepted:  # experience replay off: one online update, nothing stored
                await self.learner.update(row.state, row.action, reward, conn=conn)
        if not accepted:
            reward = float(row.reward) if row.reward is not None else reward
            return FeedbackOutcome(request_id, reward, accepted=False, learned=False)
        if learned:
            self._maybe_learn(new_id)
        return FeedbackOutcome(request_id, reward, accepted=True, learned=learned)

    async def settle(self) -> int:
        """Turn decisions whose feedback window passed into experiences with their implicit reward."""
        cutoff = utcnow() - timedelta(seconds=self.settings.bandit_reward_window_s)
        await self.decisions.flush()
        last_id = 0
        async with write_transaction(self.decisions.engine) as conn:
            claimed = await self.decisions.claim_implicit(conn, cutoff)
            for r in claimed:
                if r.replay:
                    last_id = await self.replay.add(r.state, r.action, r.reward, request_id=r.request_id,
                                                    propensity=float(r.probabilities.get(r.action, 0.0)), conn=conn)
                else:
                    await self.learner.update(r.state, r.action, r.reward, conn=conn)
        if last_id:
            self._maybe_learn(last_id, force=True)
        return len(claimed)

    def _maybe_learn(self, experience_id: int, force: bool = False) -> None:
        if force or experience_id % self.settings.replay_learn_every == 0:
            task = asyncio.create_task(self.learn())
            self._learning.add(task)
            task.add_done_callback(self._learning.discard)

    async def learn(self, batches: int = 1) -> int:
        """Batch updates from the replay buffer; returns how many experiences were applied."""
        applied = 0
        for _ in range(batches):
            try:
                applied += await self.learner.batch_update(self.replay, self.settings.replay_batch_size)
            except Exception:
                metrics.BATCH_LEARNING_FAILURE.inc()
                log.exception("batch update failed")
                raise
            metrics.BATCH_LEARNING_SUCCESS.inc()
        return applied

    async def drain(self) -> None:
        """Wait for background learning started by feedback (tests, shutdown, benchmarks)."""
        while self._learning:
            await asyncio.gather(*list(self._learning), return_exceptions=True)

    def start(self) -> None:
        """Background work of a serving process: decision-log flushes and implicit-reward settling."""
        self.decisions.start()
        self._settler.start()

    async def close(self) -> None:
        self._settler.stop()
        await self.drain()
        await self.decisions.stop()
