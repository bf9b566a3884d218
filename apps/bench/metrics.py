"""IR metrics by pytrec_eval (trec_eval's implementation), over every query in the qrels."""

from __future__ import annotations

import pytrec_eval

Run = dict[str, dict[str, float]]


def evaluate(qrels: dict[str, dict[str, int]], run: Run) -> dict[str, float]:
    """nDCG@10, Recall@100, MAP@100 and MRR@10, averaged over all qrels queries (missing runs score 0)."""
    full = {q: run.get(q, {}) for q in qrels}
    top10 = {q: dict(sorted(docs.items(), key=lambda kv: -kv[1])[:10]) for q, docs in full.items()}
    per_query = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10", "recall.100", "map_cut.100"}).evaluate(full)
    rr = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}).evaluate(top10)
    n = len(qrels)

    def mean(metric: str, table: dict[str, dict[str, float]]) -> float:
        return sum(table.get(q, {}).get(metric, 0.0) for q in qrels) / n

    return {
        "ndcg@10": round(mean("ndcg_cut_10", per_query), 4),
        "recall@100": round(mean("recall_100", per_query), 4),
        "map@100": round(mean("map_cut_100", per_query), 4),
        "mrr@10": round(mean("recip_rank", rr), 4),
    }
