"""The benches' scores: IR metrics by pytrec_eval (trec_eval's implementation), and answer metrics
against gold answer spans (SQuAD normalisation; F1 over characters for Korean, as KorQuAD's script does)."""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Iterable

import pytrec_eval

from apps.orchestration.src.debate import CONFLICT_HEADER
from apps.text.language import has_hangul

Run = dict[str, dict[str, float]]
_MARKERS = re.compile(r"(?<!\s)\s*\[\d+\]")  # starts only where a whitespace run starts: linear
_ARTICLES = re.compile(r"\b(a|an|the)\b")


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


def normalize(text: str) -> str:
    text = "".join(" " if unicodedata.category(ch).startswith("P") else ch for ch in text.lower())
    return " ".join(_ARTICLES.sub(" ", text).split())


def _units(text: str) -> list[str]:
    """Words, or characters for Korean: a Korean answer span rarely matches whole eojeol."""
    words = normalize(text).split()
    return [ch for w in words for ch in w] if has_hangul(text) else words


def exact_match(prediction: str, golds: list[str]) -> float:
    return float(any(normalize(prediction) == normalize(g) for g in golds))


def f1(prediction: str, golds: list[str]) -> float:
    best = 0.0
    for gold in golds:
        p, g = _units(prediction), _units(gold)
        common = sum((Counter(p) & Counter(g)).values())
        if common:
            precision, recall = common / len(p), common / len(g)
            best = max(best, 2 * precision * recall / (precision + recall))
    return best


def contains(text: str, value: str) -> bool:
    """`value` occurs in `text`, both normalised and without spaces (Korean spacing varies)."""
    needle = normalize(value).replace(" ", "")
    return bool(needle) and needle in normalize(text).replace(" ", "")


def answer_text(answer: str) -> str:
    """What the answer says, without citation markers, the conflict header or list bullets."""
    lines = [line.strip().removeprefix("- ") for line in answer.splitlines()]
    lines = [line for line in lines if line and line not in CONFLICT_HEADER.values()]
    return _MARKERS.sub("", " ".join(lines)).strip()


def containment(answer: str, golds: Iterable[str]) -> bool:
    """The answer states a gold span.

    Compared on what the answer says (citation markers, conflict header and bullets stripped) after
    SQuAD normalisation, spaces ignored: the definition the exact-match and F1 scores use. A raw
    substring test of the whole answer (what the answer bench used) errs both ways: a citation
    marker "[1]" "contains" a gold "1", and a capital letter, punctuation or Korean spacing hides a
    gold span the answer does state.
    """
    text = answer_text(answer)
    return any(contains(text, gold) for gold in golds)
