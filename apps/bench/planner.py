"""`dtrag bench planner`: the query planner off vs on, on a BEIR-format set.

- single: the set's own questions, each searched with the planner off and on (in alternating order, no
  result or query-vector cache, so both pay the same): nDCG@10, p50/p95, and the share left whole.
- pairs: compound questions made by joining two of the set's questions about different documents with a
  connective of the questions' language (several templates, a seeded choice per pair); the relevant
  documents are the union. both_covered@10 is the share whose top 10 documents hold a relevant document
  of each question; recall@10 and nDCG@10 are against the union.
- answers (sets with answers.jsonl): the answer pipeline on the compound questions, flag off vs on;
  both_answered is the share of answers stating a gold answer of each question (the planned answer's
  part headings, which repeat the questions, are left out of the comparison).

The templates are ways people ask two things at once (back to back, "Also,", ", and", "First, ...
Second, ...", "Is it true that ... and that ...", "그리고", "또한", "첫째, ... 둘째, ..."): nothing in
them, or in the planner's rules, is fitted to one set.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from apps.bench.beir import BeirDataset
from apps.bench.metrics import Run, containment, evaluate
from apps.bench.retrieval import ingest_dataset
from apps.core.config import Settings
from apps.core.migrations import upgrade
from apps.core.stats import percentile
from apps.ingestion.service import ProgressCallback
from apps.orchestration.src.answer_models import AnswerRequest
from apps.orchestration.src.planner.planner import QueryPlanner
from apps.orchestration.src.planner.search import plan_and_search, planner_of
from apps.runtime import Runtime, build_runtime
from apps.search.types import Hit
from apps.text.compound import asks
from apps.text.language import detect_language

TOP = 10
Template = Callable[[str, str], str]


def _bare(text: str) -> str:
    return text.strip().rstrip("?？.!。 ")


def _lower_first(text: str) -> str:
    """"Bone marrow ..." → "bone marrow ..."; acronyms and names in capitals ("BRCA1", "T cells") stay."""
    word = text.split(" ", 1)[0]
    if len(word) > 1 and word[0].isupper() and word[1:].islower():
        return text[0].lower() + text[1:]
    return text


def _sentence(text: str) -> str:
    return text.strip() if text.strip().endswith(("?", "？", ".", "!")) else text.strip() + "."


TEMPLATES: dict[tuple[str, str], dict[str, Template]] = {
    ("en", "question"): {
        "back_to_back": lambda a, b: f"{a} {b}",
        "also": lambda a, b: f"{a} Also, {_lower_first(b)}",
        "comma_and": lambda a, b: f"{_bare(a)}, and {_lower_first(b)}",
        "and_sentence": lambda a, b: f"{a} And {_lower_first(b)}",
        "first_second": lambda a, b: f"I have two questions. First, {_lower_first(a)} Second, {_lower_first(b)}",
    },
    ("en", "statement"): {
        "also": lambda a, b: f"{_sentence(a)} Also, {_lower_first(_sentence(b))}",
        "true_that": lambda a, b: f"Is it true that {_lower_first(_bare(a))} and that {_lower_first(_bare(b))}?",
        "comma_and": lambda a, b: f"{_bare(a)}, and {_lower_first(_sentence(b))}",
        "in_addition": lambda a, b: f"{_sentence(a)} In addition, {_lower_first(_sentence(b))}",
        "numbered": lambda a, b: f"Two claims: (1) {_sentence(a)} (2) {_sentence(b)}",
    },
    ("ko", "question"): {
        "back_to_back": lambda a, b: f"{a} {b}",
        "geurigo": lambda a, b: f"{a} 그리고 {b}",
        "comma_geurigo": lambda a, b: f"{_bare(a)}, 그리고 {b}",
        "ttohan": lambda a, b: f"{a} 또한 {b}",
        "first_second": lambda a, b: f"두 가지 질문이 있습니다. 첫째, {a} 둘째, {b}",
    },
    ("ko", "statement"): {
        "geurigo": lambda a, b: f"{_sentence(a)} 그리고 {_sentence(b)}",
        "ttohan": lambda a, b: f"{_sentence(a)} 또한 {_sentence(b)}",
        "first_second": lambda a, b: f"첫째, {_sentence(a)} 둘째, {_sentence(b)}",
    },
}


def _kind(a: str, b: str) -> str:
    return "question" if asks(a) and asks(b) else "statement"


def build_pairs(dataset: BeirDataset, count: int, seed: int) -> list[dict[str, Any]]:
    """`count` compound questions: two questions with no relevant document in common, one seeded template."""
    rng = random.Random(seed)
    relevant = {q: {d for d, rel in dataset.qrels.get(q, {}).items() if rel > 0} for q in dataset.queries}
    qids = sorted(q for q in dataset.queries if relevant[q])
    pairs: list[dict[str, Any]] = []
    seen: set[tuple[str, str]] = set()
    attempts = 0
    while len(pairs) < count and attempts < count * 50 and len(qids) >= 2:
        attempts += 1
        a, b = rng.sample(qids, 2)
        text_a, text_b = dataset.queries[a].strip(), dataset.queries[b].strip()
        if (a, b) in seen or relevant[a] & relevant[b] or text_a == text_b:
            continue
        language = detect_language(text_a)
        if detect_language(text_b) != language:
            continue
        seen.add((a, b))
        templates = TEMPLATES[(language, _kind(text_a, text_b))]
        name = rng.choice(sorted(templates))
        pairs.append({"id": f"{a}+{b}", "a": a, "b": b, "text": templates[name](text_a, text_b), "template": name,
                      "relevant": (relevant[a], relevant[b])})
    return pairs


def ranked_docs(hits: list[Hit], k: int = TOP) -> dict[str, float]:
    """The first k distinct documents, scored by rank (a merged plan's hits are ordered, not comparably scored)."""
    docs: list[str] = []
    for hit in hits:
        key = hit.external_id or hit.doc_id
        if key not in docs:
            docs.append(key)
        if len(docs) == k:
            break
    return {doc: float(k - i) for i, doc in enumerate(docs)}


def _latency(values: list[float]) -> dict[str, float]:
    return {"p50_ms": round(percentile(values, 50), 2), "p95_ms": round(percentile(values, 95), 2)}


@dataclass(frozen=True)
class Searched:
    docs: dict[str, float]  # the top documents, scored by rank
    ms: float  # the whole call: planning and retrieval
    parts: int
    plan_ms: float  # planning alone


class _Searcher:
    def __init__(self, runtime: Runtime, planner: QueryPlanner) -> None:
        self.runtime, self.planner = runtime, planner
        self.timeout_s = runtime.settings.planner_timeout_ms / 1000

    async def __call__(self, query: str, planned: bool, request_id: str) -> Searched:
        start = time.perf_counter()
        found = await plan_and_search(self.planner if planned else None, self.runtime.bandit, query, TOP * 2, None,
                                      request_id=request_id, timeout_s=self.timeout_s)
        elapsed = (time.perf_counter() - start) * 1000
        plan = found.plan
        return Searched(ranked_docs(found.result.hits), elapsed, len(plan.parts) if plan else 1,
                        plan.elapsed_ms if plan else 0.0)


def _alternating(index: int) -> tuple[bool, bool]:
    """Planner off and on for the index-th question, in alternating order so neither always runs on a
    warmer cache."""
    return (False, True) if index % 2 == 0 else (True, False)


async def _both(search: _Searcher, query: str, index: int, key: str) -> dict[bool, Searched]:
    return {planned: await search(query, planned, f"{key}-{int(planned)}") for planned in _alternating(index)}


async def _single(search: _Searcher, dataset: BeirDataset) -> dict[str, Any]:
    runs: dict[bool, Run] = {False: {}, True: {}}
    latencies: dict[bool, list[float]] = {False: [], True: []}
    whole = 0
    planning: list[float] = []
    for i, (qid, query) in enumerate(dataset.queries.items()):
        for planned, found in (await _both(search, query, i, f"single-{i}")).items():
            runs[planned][qid] = found.docs
            latencies[planned].append(found.ms)
            if planned:
                whole += found.parts == 1
                planning.append(found.plan_ms)
    out: dict[str, Any] = {name: {"ndcg@10": evaluate(dataset.qrels, runs[planned])["ndcg@10"],
                                  **_latency(latencies[planned])} for name, planned in (("off", False), ("on", True))}
    out["one_part_rate"] = round(whole / len(dataset.queries), 4)
    out["queries"] = len(dataset.queries)
    # Two ways to see what planning adds: the p95s' difference (noisy: two samples of the same search), and
    # the planner's own time, which is all the work a one-part plan adds.
    out["p95_added_ms"] = round(out["on"]["p95_ms"] - out["off"]["p95_ms"], 2)
    out["plan_p95_ms"] = round(percentile(planning, 95), 3)
    return out


async def _pairs(search: _Searcher, pairs: list[dict[str, Any]]) -> dict[str, Any]:
    qrels = {p["id"]: {d: 1 for d in p["relevant"][0] | p["relevant"][1]} for p in pairs}
    runs: dict[bool, Run] = {False: {}, True: {}}
    latencies: dict[bool, list[float]] = {False: [], True: []}
    covered: dict[bool, list[bool]] = {False: [], True: []}
    recall: dict[bool, list[float]] = {False: [], True: []}
    split = 0
    by_template: dict[str, dict[bool, list[bool]]] = {}
    for i, pair in enumerate(pairs):
        for planned, found in (await _both(search, pair["text"], i, f"pair-{i}")).items():
            runs[planned][pair["id"]] = found.docs
            latencies[planned].append(found.ms)
            top = set(found.docs)
            both = bool(top & pair["relevant"][0]) and bool(top & pair["relevant"][1])
            covered[planned].append(both)
            recall[planned].append(len(top & set(qrels[pair["id"]])) / len(qrels[pair["id"]]))
            by_template.setdefault(pair["template"], {False: [], True: []})[planned].append(both)
            split += planned and found.parts > 1
    out: dict[str, Any] = {}
    for name, planned in (("off", False), ("on", True)):
        out[name] = {"both_covered@10": round(sum(covered[planned]) / len(pairs), 4),
                     "recall@10": round(sum(recall[planned]) / len(pairs), 4),
                     "ndcg@10": evaluate(qrels, runs[planned])["ndcg@10"], **_latency(latencies[planned])}
    out["pairs"] = len(pairs)
    out["split_rate"] = round(split / len(pairs), 4)
    out["by_template"] = {name: {"pairs": len(v[False]), "off": round(sum(v[False]) / len(v[False]), 4),
                                 "on": round(sum(v[True]) / len(v[True]), 4)}
                          for name, v in sorted(by_template.items())}
    return out


def _stated(answer: str, headings: set[str]) -> str:
    return "\n".join(line for line in answer.splitlines() if line.strip() not in headings)


async def _answers(runtime: Runtime, dataset: BeirDataset, pairs: list[dict[str, Any]]) -> dict[str, Any] | None:
    golds = dataset.answers()
    if not golds:
        return None
    usable = [p for p in pairs if golds.get(p["a"]) and golds.get(p["b"])]
    pipeline = runtime.pipelines.get()
    answered: dict[bool, list[bool]] = {False: [], True: []}
    latencies: dict[bool, list[float]] = {False: [], True: []}
    for i, pair in enumerate(usable):
        for planned in _alternating(i):
            start = time.perf_counter()
            result = await pipeline.execute(AnswerRequest(pair["text"], top_k=runtime.settings.answer_top_k,
                                                          flags={"meta_planner": planned},
                                                          request_id=f"answer-{i}-{int(planned)}"))
            latencies[planned].append((time.perf_counter() - start) * 1000)
            parts = result.plan.parts if result.plan else []
            text = _stated(result.answer, {f"{n}. {part.text}" for n, part in enumerate(parts, start=1)})
            answered[planned].append(containment(text, golds[pair["a"]]) and containment(text, golds[pair["b"]]))
    if not usable:
        return None
    return {name: {"both_answered": round(sum(answered[planned]) / len(usable), 4), **_latency(latencies[planned])}
            for name, planned in (("off", False), ("on", True))} | {"pairs": len(usable)}


async def bench_planner(dataset: BeirDataset, settings: Settings, pairs: int = 300, seed: int = 0,
                        on_progress: ProgressCallback | None = None) -> dict[str, Any]:
    # No result cache: off and on search the same text for a single question, and on must not ride on off.
    settings = settings.model_copy(update={"search_cache_ttl_s": 0})
    upgrade(settings.database_url)
    async with build_runtime(settings) as runtime:
        ingest = await ingest_dataset(runtime, dataset, on_progress)
        await runtime.warm_up()
        planner = planner_of(runtime.pipelines, runtime.search.analyzer, settings)
        search = _Searcher(runtime, planner)
        for i, query in enumerate(list(dataset.queries.values())[:5]):  # warm caches and buffers both ways
            await _both(search, query, i, f"warm-{i}")
        compound = build_pairs(dataset, pairs, seed)
        return {
            "dataset": dataset.name,
            "split": dataset.split,
            "backend": settings.backend,
            "planner": planner.name,
            "strategy": settings.default_strategy,
            "ingest": {"docs": ingest["docs"], "reused": ingest["reused"]},
            "seed": seed,
            "single": await _single(search, dataset),
            "pairs": await _pairs(search, compound),
            "answers": await _answers(runtime, dataset, compound),
        }
