"""How far case memory could go on a benchmark, beside what it did: two ceilings of `dtrag bench cases`.

- `ceiling`: the close cases in the hands of a selector that never errs (it knows the test labels);
- `hindsight`: the same selector, features and decision rule as served, fitted cross-fold on the test
  questions' own outcomes instead of the history's. What it adds over `with_cases` is what more (and
  better matched) history could teach these features; when it adds nothing over the baseline either,
  the features do not hold what the ceiling would need, and no amount of training on them will.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import mmh3
import numpy as np

from apps.bench.beir import BeirDataset
from apps.bench.metrics import Run, evaluate
from apps.bench.retrieval import DOC_DEPTH
from apps.core.visibility import DEFAULT_COLLECTION
from apps.runtime import Runtime
from apps.search.cases.features import BASE_FEATURES, FEATURES, Candidate
from apps.search.cases.model import CollectionModel, Logistic, SelectorParameters
from apps.search.cases.selector import Selector
from apps.search.cases.types import Ranking

FOLDS = 5
MIN_LABELS = 5  # of each label among a fold's training rows, as the batch update asks (min_positives)
COSINE, LEXICAL_QUERY, LEXICAL_CASE = (FEATURES.index(f) for f in ("cosine", "lexical_query", "lexical_case"))


async def _relevant_chunks(runtime: Runtime, qrels: dict[str, dict[str, int]]) -> dict[int, str]:
    """Chunk id → document, for every document some test question judges relevant."""
    collection = await runtime.cases.store.collection_id(DEFAULT_COLLECTION)
    relevant_docs = sorted({d for judged in qrels.values() for d, s in judged.items() if s > 0})
    chunks = await runtime.cases.store.chunks_of_documents(collection or 0, relevant_docs)
    return {cid: doc for doc, ids in chunks.items() for cid in ids}


async def ceiling(runtime: Runtime, test: BeirDataset, qrels: dict[str, dict[str, int]], base: Run,
                  request_ids: dict[str, str]) -> dict[str, Any]:
    """What a selector that never errs could add from these cases: for each test question whose plain first
    document is not relevant, the relevant document a close case proposed (if any) moved first. With gold
    answers (answers.jsonl), also how many of those wrong first documents hold one: moving a passage over
    one that answers the question follows the label's choice between duplicates, it corrects nothing; the
    second figure is the ceiling without such moves."""
    await runtime.cases.leg.flush()
    doc_of = await _relevant_chunks(runtime, qrels)
    answers = test.answers()
    texts = {d.external_id: d.text for d in test.corpus()} if answers else {}
    best, without = dict(base), dict(base)
    wrong = proposed = holds_answer = 0
    for qid, scores in base.items():
        first = max(scores, key=lambda d: scores[d]) if scores else None
        if first is None or qrels[qid].get(first, 0) > 0:
            continue
        wrong += 1
        answered = any(a and a in texts.get(first, "") for a in answers.get(qid, ()))
        holds_answer += answered
        row = await runtime.cases.store.decision(request_ids[qid])
        found = [doc_of[c["chunk_id"]] for c in (row.candidates if row is not None else ())
                 if c.get("judgement", 0) > 0 and qrels[qid].get(doc_of.get(c["chunk_id"], ""), 0) > 0]
        if not found:
            continue
        proposed += 1
        moved = {**scores, found[0]: max(scores.values()) + 1.0}
        best[qid] = moved
        if not answered:
            without[qid] = moved
    out = {"wrong_first": wrong, "relevant_proposed": proposed, "ndcg@10": evaluate(qrels, best)["ndcg@10"]}
    if answers:
        out |= {"wrong_first_holding_an_answer": holds_answer,
                "ndcg@10_without_those": evaluate(qrels, without)["ndcg@10"]}
    return out


def logged_candidate(row: dict[str, Any]) -> Candidate | None:
    """A candidate as the decision log kept it (None: logged with another feature set)."""
    features = np.asarray(row.get("features", ()), dtype=np.float64)
    if len(features) != len(FEATURES):
        return None
    return Candidate(int(row["chunk_id"]), int(row["case_id"]), str(row["collection"]), float(row["judgement"]),
                     float(features[COSINE]), float(features[LEXICAL_QUERY]), float(features[LEXICAL_CASE]), features)


def cross_fitted(inputs: dict[str, tuple[Ranking, list[Candidate]]], relevant: Callable[[str, int], bool],
                 selector: Selector, collection: str, strategy: str, folds: int = FOLDS,
                 seed: int = 0) -> dict[str, list[int]] | None:
    """Each question's ranking as the selector decides it when fitted on the other folds' questions, their
    own candidates labelled by whether they are relevant to them. None: a fold has too few of a label to fit."""
    fold = {qid: mmh3.hash(qid, seed, signed=False) % folds for qid in inputs}
    rows = [(fold[qid], c.features, float(relevant(qid, c.chunk_id)))
            for qid, (_, found) in inputs.items() for c in found if c.judgement > 0]
    if not rows:
        return None
    parts, x, y = (np.array([r[0] for r in rows]), np.stack([r[1] for r in rows]), np.array([r[2] for r in rows]))
    current = selector.parameters.model_for(collection, FEATURES, BASE_FEATURES)
    if current is None or current.base_for(strategy) is None:
        return None
    out: dict[str, list[int]] = {}
    for k in range(folds):
        train = parts != k
        if not MIN_LABELS <= int(y[train].sum()) <= int(train.sum()) - MIN_LABELS:
            return None
        model = CollectionModel(Logistic.fit(x[train], y[train]), current.base, current.examples)
        selector.parameters = SelectorParameters(0, FEATURES, BASE_FEATURES, {collection: model})
        for qid, (ranking, found) in inputs.items():
            if fold[qid] == k:
                out[qid] = selector.decide(ranking, found, strategy).order
    return out


async def hindsight(runtime: Runtime, queries: dict[str, str], qrels: dict[str, dict[str, int]], base: Run,
                    request_ids: dict[str, str], strategy: str, depth: int) -> float | None:
    """nDCG@10 of the served selector fitted cross-fold on the test questions' own outcomes (greedy: no
    exploration), over the candidates and plain rankings the served run saw. None: no fitted model to
    start from (the fixed rule served), or too few outcomes."""
    await runtime.cases.leg.flush()
    doc_of = await _relevant_chunks(runtime, qrels)
    inputs: dict[str, tuple[Ranking, list[Candidate]]] = {}
    for qid, text in queries.items():
        row = await runtime.cases.store.decision(request_ids[qid])
        logged = [logged_candidate(c) for c in row.candidates or ()] if row is not None else []
        found = [c for c in logged if c is not None]
        if not found or len(found) < len(logged):
            continue
        # The ranking the case leg saw: the plain one at the search's depth (its hits name their documents).
        plain = await runtime.search.search(text, top_k=runtime.search.depth(depth), strategy=strategy)
        doc_of |= {h.chunk_id: h.external_id or h.doc_id for h in plain.hits}
        inputs[qid] = (Ranking.of_hits(plain.hits), found)
    served = runtime.cases.selector
    replay = Selector(served.store, served.thresholds, math.inf, exploration=0.0)
    replay.parameters = served.parameters
    orders = cross_fitted(inputs, lambda qid, cid: qrels[qid].get(doc_of.get(cid, ""), 0) > 0, replay,
                          DEFAULT_COLLECTION, strategy)
    if orders is None:
        return None
    run = dict(base)
    for qid, order in orders.items():
        scores: dict[str, float] = {}
        for i, cid in enumerate(order):
            # A passage from outside the plain ranking that no test question judges: a document of its own.
            scores.setdefault(doc_of.get(cid, f"chunk:{cid}"), float(len(order) - i))
            if len(scores) >= DOC_DEPTH:
                break
        run[qid] = scores
    return evaluate(qrels, run)["ndcg@10"]
