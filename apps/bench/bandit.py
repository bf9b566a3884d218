"""`dtrag bench bandit`: does the strategy bandit learn? Simulated users through the production path.

Training: every train query, `epochs` times in a seeded order, goes through `StrategyBandit.retrieve`
(BM25 first look → state → Boltzmann draw → search → decision log), then `StrategyBandit.feedback`
with rating = nDCG@10 of the served documents from the qrels (reward = rating − λ·latency ms) →
replay buffer → batch updates every `replay_learn_every` experiences, exactly as the API does.
Evaluation on held-out queries: the learned (conservative greedy) policy is run for real; every
fixed strategy is run for real; uniform-random and the per-query oracle are computed from the fixed
strategies' per-query results.
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytrec_eval
from sqlalchemy import text

from apps.bench.beir import BeirDataset, load_dataset
from apps.bench.databases import bench_settings, default_database_url
from apps.bench.retrieval import doc_scores, ingest_dataset
from apps.core.config import Settings
from apps.core.db import write_transaction
from apps.core.hashing import normalized_value
from apps.core.migrations import upgrade
from apps.core.stats import percentile
from apps.orchestration.src.bandit import ope
from apps.orchestration.src.bandit.decision_log import Decision, DecisionLog
from apps.orchestration.src.bandit.state import encode_state
from apps.runtime import Runtime, build_runtime
from apps.search.strategies import BM25

TOP_K = 20  # chunks per query: enough for ten documents on these corpora
_LEARNING_TABLES = ("bandit_decisions", "replay_experiences", "q_values", "bandit_policies")


def split_queries(path: Path, train_fraction: float | None) -> tuple[BeirDataset, BeirDataset]:
    """(train, test): the dataset's train/test qrels, else a stable-hash split of the test queries."""
    test = load_dataset(path, "test")
    if train_fraction is None and (path / "qrels" / "train.tsv").is_file():
        return load_dataset(path, "train"), test
    fraction = 0.5 if train_fraction is None else train_fraction
    cut = round(fraction * 10_000)
    in_train = {q for q in test.qrels if normalized_value(q, "bandit-split") <= cut}

    def subset(keep: Callable[[str], bool], split: str) -> BeirDataset:
        qrels = {q: r for q, r in test.qrels.items() if keep(q)}
        return BeirDataset(test.name, test.path, {q: test.queries[q] for q in qrels}, qrels, split)

    return subset(lambda q: q in in_train, "train-half"), subset(lambda q: q not in in_train, "test-half")


class _Scorer:
    def __init__(self, dataset: BeirDataset) -> None:
        self._evaluator = pytrec_eval.RelevanceEvaluator(dataset.qrels, {"ndcg_cut.10"})

    def __call__(self, qid: str, hits: list[Any]) -> float:
        return self._evaluator.evaluate({qid: doc_scores(hits) or {"-": 0.0}})[qid]["ndcg_cut_10"]


def _mean(values: list[float]) -> float:
    return round(statistics.fmean(values), 4) if values else 0.0


async def _fixed_results(runtime: Runtime, dataset: BeirDataset, arms: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """Per query and arm: nDCG@10 and latency, each strategy run for real."""
    score = _Scorer(dataset)
    out: dict[str, dict[str, Any]] = {}
    for qid, query in dataset.queries.items():
        row = {}
        for arm in arms:
            start = time.perf_counter()
            result = await runtime.search.search(query, TOP_K, strategy=arm)
            row[arm] = (score(qid, result.hits), (time.perf_counter() - start) * 1000)
        out[qid] = row
    return out


async def _learned(runtime: Runtime, dataset: BeirDataset) -> dict[str, Any]:
    """Run the learned greedy policy for real: first look, state, greedy arm, search reusing the look."""
    score = _Scorer(dataset)
    learner = runtime.bandit.learner
    await learner.refresh(force=True)
    ndcgs, latencies, choices = [], [], {}
    for qid, query in dataset.queries.items():
        start = time.perf_counter()
        look = await runtime.search.first_look(query, TOP_K)
        state = encode_state(query, runtime.search.analyzer.query_terms(query, runtime.settings.max_query_terms), look)
        arm = learner.greedy(state)
        result = await runtime.search.search(query, TOP_K, strategy=arm, prefetched={BM25: look})
        latencies.append((time.perf_counter() - start) * 1000)
        ndcgs.append(score(qid, result.hits))
        choices[arm] = choices.get(arm, 0) + 1
    return {"ndcg@10": _mean(ndcgs), "mean_ms": round(statistics.fmean(latencies), 2), "choices": choices,
            "per_query_reward": [n - runtime.settings.bandit_latency_cost * ms for n, ms in zip(ndcgs, latencies)]}


async def _policy_overhead(runtime: Runtime, dataset: BeirDataset, limit: int = 300) -> dict[str, float]:
    """Selection plus logging per request (state encoding, draw, decision record), first looks precomputed."""
    learner = runtime.bandit.learner
    looks = []
    for query in list(dataset.queries.values())[:limit]:
        terms = runtime.search.analyzer.query_terms(query, runtime.settings.max_query_terms)
        looks.append((query, terms, await runtime.search.first_look(query, TOP_K)))
    log = DecisionLog(runtime.engine)  # never flushed: these decisions were not served
    timings = []
    for i, (query, terms, look) in enumerate(looks):
        start = time.perf_counter()
        state = encode_state(query, terms, look)
        arm, probabilities = learner.select(state, f"overhead-{i}")
        log.record(Decision(
            request_id=f"overhead-{i}", endpoint="bench-overhead", state=state, action=arm,
            probabilities=dict(zip(learner.arms, probabilities)), policy_version=learner.version, variant="new"))
        timings.append((time.perf_counter() - start) * 1000)
    return {"p50_ms": round(percentile(timings, 50), 4), "p95_ms": round(percentile(timings, 95), 4)}


async def _buffer_footprint(runtime: Runtime) -> dict[str, Any]:
    """Fill a buffer to its 10,000-entry default and measure its on-disk size, then remove the filler."""
    replay = runtime.bandit.replay
    async with write_transaction(runtime.engine) as conn:
        for i in range(replay.max_size):
            await replay.add("en|medium|other|idf-high|lead-sharp", "hybrid_cc", 0.5, propensity=0.25,
                             request_id=f"footprint-{i:05d}-{'x' * 16}", conn=conn)
    stats = await replay.stats()
    async with write_transaction(runtime.engine) as conn:
        await conn.execute(text("DELETE FROM replay_experiences WHERE request_id LIKE 'footprint-%'"))
    return {"entries": stats["size"], "bytes": stats["storage_bytes"]}


async def bench_bandit(dataset_path: str | Path, base: Settings, *, database_url: str | None = None,
                       epochs: int = 3, seed: int = 0, latency_cost: float = 0.0,
                       train_fraction: float | None = None,
                       on_progress: Callable[[str, int, int], None] | None = None) -> dict[str, Any]:
    train, test = split_queries(Path(dataset_path), train_fraction)
    settings = bench_settings(base, database_url or default_database_url(test), bandit_latency_cost=latency_cost,
                              bandit_reward_window_s=3600.0)
    upgrade(settings.database_url)
    progress = on_progress or (lambda *_: None)
    async with build_runtime(settings) as runtime:
        bandit, learner = runtime.bandit, runtime.bandit.learner
        await ingest_dataset(runtime, test)
        await runtime.warm_up()
        async with write_transaction(runtime.engine) as conn:  # a fresh policy for every run
            for table in _LEARNING_TABLES:
                await conn.execute(text(f"DELETE FROM {table}"))
        await learner.refresh(force=True)
        train_score = _Scorer(train)
        curve = []
        total = epochs * len(train.queries)
        done = 0
        for epoch in range(epochs):
            order = sorted(train.queries)
            random.Random(seed * 1000 + epoch).shuffle(order)
            rewards = []
            for qid in order:
                request_id = f"bench-{seed}-{epoch}-{qid}"
                retrieval = await bandit.retrieve(train.queries[qid], TOP_K, None, request_id=request_id,
                                                  endpoint="bench", use_bandit=True, replay=True, variant="new")
                bandit.commit(retrieval.decision)
                outcome = await bandit.feedback(request_id, rating=train_score(qid, retrieval.result.hits))
                await bandit.drain()
                rewards.append(outcome.reward)
                done += 1
                progress("train", done, total)
            learned = await _learned(runtime, test)
            curve.append({"epoch": epoch + 1, "train_mean_reward": _mean(rewards),
                          "test_ndcg@10": learned["ndcg@10"], "test_mean_ms": learned["mean_ms"],
                          "policy_version": learner.version})
            progress("evaluate", epoch + 1, epochs)
        arms = learner.arms
        fixed_rows = await _fixed_results(runtime, test, arms)
        fixed = {arm: {"ndcg@10": _mean([r[arm][0] for r in fixed_rows.values()]),
                       "mean_ms": round(statistics.fmean(r[arm][1] for r in fixed_rows.values()), 2)} for arm in arms}
        random_policy = {"ndcg@10": _mean([statistics.fmean(r[a][0] for a in arms) for r in fixed_rows.values()]),
                         "mean_ms": round(statistics.fmean(statistics.fmean(r[a][1] for a in arms)
                                                           for r in fixed_rows.values()), 2)}
        oracle_picks = [max(arms, key=lambda a: (r[a][0], -r[a][1])) for r in fixed_rows.values()]
        oracle = {"ndcg@10": _mean([r[a][0] for r, a in zip(fixed_rows.values(), oracle_picks)]),
                  "mean_ms": round(statistics.fmean(r[a][1] for r, a in zip(fixed_rows.values(), oracle_picks)), 2)}
        learned = await _learned(runtime, test)
        logged = [ope.Logged(r.state, r.action, float(r.reward), dict(r.probabilities))
                  async for r in bandit.decisions.rewarded(endpoint="bench")]
        estimate = ope.evaluate(logged, ope.greedy_policy(learner.greedy, arms),
                                model=lambda s, a: learner.get_q_values(s)[arms.index(a)], seed=seed)
        estimate["measured_test_reward"] = _mean(learned.pop("per_query_reward"))
        # The log comes from the training queries: the like-for-like check runs the policy on them.
        estimate["measured_train_reward"] = _mean((await _learned(runtime, train))["per_query_reward"])
        best = max(fixed, key=lambda a: fixed[a]["ndcg@10"])
        default = settings.default_strategy
        return {
            "dataset": test.name, "backend": settings.backend, "train_split": train.split,
            "train_queries": len(train.queries), "test_queries": len(test.queries), "epochs": epochs, "seed": seed,
            "latency_cost": latency_cost,
            "learned": learned, "fixed": fixed, "random": random_policy, "oracle": oracle,
            "best_fixed": best, "default": default,
            "comparison": {
                "learned_minus_best_fixed": round(learned["ndcg@10"] - fixed[best]["ndcg@10"], 4),
                "learned_minus_default": round(learned["ndcg@10"] - fixed[default]["ndcg@10"], 4),
                "latency_ratio_to_best_fixed": round(learned["mean_ms"] / fixed[best]["mean_ms"], 3),
            },
            "learning_curve": curve, "ope": estimate,
            "batches": learner.version,  # one policy version per batch update
            "q_table": _q_summary(learner),
            "policy_overhead": await _policy_overhead(runtime, test),
            "replay_buffer_full": await _buffer_footprint(runtime),
        }


def _q_summary(learner: Any) -> dict[str, Any]:
    table = learner.q_table
    rows = sorted(((learner.visits(s), s) for s in table), reverse=True)
    return {"states": len(table), "arms": list(learner.arms),
            "top_states": [{"state": s, "visits": n, "greedy": learner.greedy(s),
                            "q": [round(x, 4) for x in table[s]]} for n, s in rows[:12]]}
