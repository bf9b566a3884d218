"""`dtrag bench cases` on a tiny BEIR set: cold equals the baseline, imported judgements move the rewarded
document up, and the ceiling counts what a selector that never errs could add, and how much of that would
only follow a label over a passage that holds the answer."""

from __future__ import annotations

import json
from pathlib import Path

from apps.bench.beir import load_dataset
from apps.bench.cases import bench_cases

CORPUS = {
    "eiffel-build": "The Eiffel Tower was built between 1887 and 1889 by the company of Gustave Eiffel in Paris.",
    "eiffel-height": "The Eiffel Tower is 330 metres tall; it was the tallest structure in the world until 1930.",
    "liberty": "The Statue of Liberty is a copper statue in New York, designed by Frederic Bartholdi.",
    "louvre": "The Louvre in Paris is the world's most visited museum; it holds the Mona Lisa.",
    "vitamin": "Sunlight helps the skin produce vitamin D; a deficiency is associated with bone loss.",
}
# (id, text, relevant document, gold answer). h-* are the history, t-* the test questions. t-build's label
# names the Louvre (as a team's judgement may, against the text), and the first document holds its answer.
QUERIES = [
    ("h-build", "Which company built the Eiffel Tower in Paris?", "louvre", "Gustave Eiffel"),
    ("h-tall", "How tall is the Eiffel Tower?", "eiffel-height", "330 metres"),
    ("h-sun", "What helps the skin produce vitamin D?", "vitamin", "Sunlight"),
    ("t-build", "which company built the Eiffel Tower in Paris", "louvre", "Gustave Eiffel"),
    ("t-statue", "Who designed the Statue of Liberty?", "liberty", "Frederic Bartholdi"),
    ("t-museum", "Which museum holds the Mona Lisa?", "louvre", "The Louvre"),
]


def write_dataset(root: Path) -> Path:
    (root / "qrels").mkdir(parents=True)
    (root / "corpus.jsonl").write_text("".join(json.dumps({"_id": d, "title": "", "text": t}) + "\n"
                                               for d, t in CORPUS.items()))
    (root / "queries.jsonl").write_text("".join(json.dumps({"_id": q, "text": t}) + "\n" for q, t, _, _ in QUERIES))
    (root / "answers.jsonl").write_text("".join(json.dumps({"_id": q, "answers": [a]}) + "\n"
                                                for q, _, _, a in QUERIES))
    (root / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n"
                                             + "".join(f"{q}\t{d}\t1\n" for q, _, d, _ in QUERIES))
    return root


async def test_the_bench_measures_cases_against_the_baseline_and_the_ceiling(tmp_path, settings) -> None:
    data = load_dataset(write_dataset(tmp_path / "tiny"), "test")
    history = sorted(q for q in data.queries if q.startswith("h-"))
    test = sorted(q for q in data.queries if q.startswith("t-"))
    out = await bench_cases(data, data, history, test, settings, strategy="hybrid_cc", noise=0.0)
    assert (out["queries"], out["history"]) == (3, 3)
    assert out["cold"]["ndcg@10"] == out["baseline"]["ndcg@10"] and out["cold"]["changed"] == 0
    # The fixed rule (three cases are too few for a model) trusts the near-duplicate past question.
    assert out["selector"]["with_cases"]["default"]["selector"] == "rule"
    assert out["with_cases"]["ndcg@10"] > out["baseline"]["ndcg@10"] and out["with_cases"]["changed"] == 1
    ceiling = out["ceiling"]
    assert (ceiling["wrong_first"], ceiling["relevant_proposed"], ceiling["wrong_first_holding_an_answer"]) == (1, 1, 1)
    assert ceiling["ndcg@10"] == out["with_cases"]["ndcg@10"]
    assert ceiling["ndcg@10_without_those"] == out["baseline"]["ndcg@10"]
    # The fixed rule served: no fitted selector to refit on the test questions' outcomes.
    assert ceiling["hindsight_ndcg@10"] is None
