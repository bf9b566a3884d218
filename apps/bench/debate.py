"""`dtrag bench debate`: one pass vs an independent vote at equal calls vs the debate, on a BEIR-format
QA set with gold answer spans (`answers.jsonl`).

Contexts are what DT-RAG retrieves (the default strategy, top `ANSWER_TOP_K` passages) from a scratch
database (a fresh SQLite file, or `--database-url`), so the bench runs on either backend. `--conflicts
F` plants, for a seeded fraction F of the questions, a misinformation copy of the gold passage: every
occurrence of the gold span replaced by another question's answer. The copy is ingested and competes in
retrieval like any passage, in its own question's searches only (a `doc_ids` filter). `--noise K` adds
K random passages from deeper in the ranking to every context.

Scores: exact match and F1 against the gold spans (SQuAD normalisation; F1 over characters for
Korean, as KorQuAD's script does), containment of a gold span, source hit (a cited passage is the
gold one), groundedness (every claim supported by its cited chunk), calls, tokens, latency. For the
planted questions: the silent misinformation rate (the answer has the false value, not the true one,
and does not say the sources differ), the unflagged rate (the false value without a conflict report,
true value or not), the conflict-reported rate, abstentions; on the clean ones, false conflict alarms.
Differences between modes carry paired bootstrap 95 % intervals.
"""

from __future__ import annotations

import random
import statistics
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mmh3
import numpy as np

from apps.bench.beir import load_dataset
from apps.bench.databases import bench_settings, scratch_database_url
from apps.bench.metrics import answer_text, containment, contains, exact_match, f1, normalize
from apps.core.config import Settings
from apps.core.migrations import upgrade
from apps.core.stats import percentile
from apps.ingestion.documents import SourceDocument
from apps.llm.base import AnswerProvider, ComposeRequest, Evidence
from apps.llm.extractive import NOT_FOUND
from apps.llm.factory import build_provider
from apps.orchestration.src.debate import DebateEngine
from apps.orchestration.src.grounding import Citation, cite
from apps.runtime import Runtime, build_runtime
from apps.search.types import SearchFilters
from apps.text.analyzer import Analyzer, get_analyzer
from apps.text.language import detect_language
from apps.text.sentences import split_sentences

MODES = ("single", "vote", "debate")
_BOOTSTRAP = 2000


# --- contexts from the database -------------------------------------------------------------------------

@dataclass
class Case:
    qid: str
    question: str
    golds: list[str]
    gold_docs: set[str]
    context: tuple[Evidence, ...]
    false_value: str | None = None  # the planted value, when this question's corpus has a misinformation copy


def _plant(text: str, golds: list[str], candidates: list[str]) -> tuple[str, str] | None:
    spans = [g for g in golds if g and g in text]
    if not spans:
        return None
    for value in candidates:
        v = normalize(value)
        if v and value not in text and all(v not in normalize(g) and normalize(g) not in v for g in golds):
            copy = text
            for span in sorted(spans, key=len, reverse=True):
                copy = copy.replace(span, value)
            return copy, value
    return None


async def _ingested(runtime: Runtime, documents: list[SourceDocument]) -> dict[str, str]:
    """Ingest (a no-op for what is already there) and map each document's identity to its id."""
    report = await runtime.ingestion.ingest(documents, skip_invalid=True)
    return {o.identity: o.document_id for o in report.outcomes}


async def build_cases(runtime: Runtime, dataset: Path, conflicts: float, noise: int, limit: int | None,
                      seed: int) -> list[Case]:
    """Each question's context is what DT-RAG retrieves for it (the default strategy, `ANSWER_TOP_K`
    passages) from the base corpus plus, for a planted question, its own misinformation copy: a
    `doc_ids` filter keeps every other question's copy out (corpus statistics see all of them)."""
    settings = runtime.settings
    data = load_dataset(dataset)
    answers = data.answers()
    if not answers:
        raise FileNotFoundError(f"{dataset}: no answers.jsonl (the debate bench needs gold answer spans)")
    corpus = data.corpus(settings.max_document_bytes, skipped=[])
    base = await _ingested(runtime, corpus)
    by_external = {d.external_id: d for d in corpus}
    qids = [q for q in data.queries if answers.get(q)]
    qids = qids[:limit] if limit else qids
    planted = set(random.Random(seed).sample(qids, round(conflicts * len(qids))))
    copies: dict[str, tuple[SourceDocument, str]] = {}
    for qid in sorted(planted):
        gold = next((by_external[d] for d, rel in sorted(data.qrels.get(qid, {}).items())
                     if rel > 0 and d in by_external), None)
        if gold is None:
            continue
        others = [a for q in qids if q != qid for a in answers[q]]
        random.Random(mmh3.hash(f"{seed}:{qid}", signed=False)).shuffle(others)
        made = _plant(gold.text, answers[qid], others)
        if made:
            copies[qid] = (SourceDocument(text=made[0], title=gold.title, external_id=f"{gold.external_id}#planted-{qid}",
                                          metadata={"planted_for": qid}, origin=f"planted copy for {qid}"), made[1])
    planted_ids = await _ingested(runtime, [doc for doc, _ in copies.values()]) if copies else {}
    base_ids = tuple(base[d.external_id] for d in corpus if d.external_id in base)
    cases = []
    for qid in qids:
        copy = copies.get(qid)
        doc_ids = base_ids + ((planted_ids[copy[0].external_id],) if copy else ())
        filters = SearchFilters(doc_ids=doc_ids) if planted_ids else SearchFilters()
        depth = settings.answer_top_k + noise
        result = await runtime.search.search(data.queries[qid], depth * 4 if noise else depth, filters)
        hits = result.hits[: settings.answer_top_k]
        rest = result.hits[settings.answer_top_k:]
        hits += random.Random(mmh3.hash(f"noise:{seed}:{qid}", signed=False)).sample(rest, min(noise, len(rest)))
        best = max((h.score for h in hits), default=1.0) or 1.0
        context = tuple(Evidence(h.chunk_id, h.external_id or h.doc_id, h.title, h.text, round(h.score / best, 4))
                        for h in hits)
        gold_docs = {d for d, rel in data.qrels.get(qid, {}).items() if rel > 0}
        cases.append(Case(qid, data.queries[qid], answers[qid], gold_docs, context, copy[1] if copy else None))
    return cases


# --- running the modes ---------------------------------------------------------------------------------

@dataclass
class Outcome:
    answer: str
    citations: list[Citation]
    conflict: bool
    ms: float
    calls: int
    llm_calls: int
    tokens: int
    cost_usd: float
    extra: dict[str, Any] = field(default_factory=dict)


async def _single(provider: AnswerProvider, analyzer: Analyzer, case: Case, max_sentences: int) -> Outcome:
    start = time.perf_counter()
    request = ComposeRequest(case.question, detect_language(case.question), "answer", case.context, max_sentences)
    generation = await provider.generate(request)
    ms = (time.perf_counter() - start) * 1000
    usage = generation.usage
    return Outcome(generation.text, cite(analyzer, generation.text, case.context), False, ms, 1,
                   int(provider.name != "extractive"), usage.input_tokens + usage.output_tokens, usage.cost_usd)


async def _engine(engine: DebateEngine, case: Case, vote: int | None, rounds: int) -> Outcome:
    start = time.perf_counter()
    result = (await engine.run_vote(case.question, case.context, voters=vote) if vote
              else await engine.run_debate(case.question, case.context, max_rounds=rounds))
    ms = (time.perf_counter() - start) * 1000
    return Outcome(result.final_answer, result.citations, result.conflict, ms, result.calls, result.llm_calls,
                   result.usage.input_tokens + result.usage.output_tokens, result.usage.cost_usd,
                   {"rounds": result.rounds, "stop_reason": result.stop_reason, "fell_back": result.fell_back})


def _score(case: Case, out: Outcome, threshold: float) -> dict[str, float | None]:
    text = answer_text(out.answer)
    abstained = out.answer.strip() in NOT_FOUND.values()
    cited_docs = {e.doc_id for e in case.context if any(e.chunk_id in c.chunk_ids for c in out.citations)}
    true = containment(out.answer, case.golds)
    row: dict[str, float | None] = {
        "exact_match": exact_match(text, case.golds), "f1": f1(text, case.golds), "containment": float(true),
        "source_hit": float(bool(cited_docs & case.gold_docs)),
        "grounded": float(bool(out.citations) and all(c.chunk_ids and c.support >= threshold for c in out.citations)),
        "abstained": float(abstained), "conflict_reported": float(out.conflict), "silent_misinformation": None,
        "unflagged_misinformation": None, "misinformation": None,
    }
    if case.false_value is not None:
        false = contains(text, case.false_value)
        row["misinformation"] = float(false)
        row["silent_misinformation"] = float(false and not true and not out.conflict)
        row["unflagged_misinformation"] = float(false and not out.conflict)
    return row


def _mean(values: list[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return round(statistics.fmean(kept), 4) if kept else None


def _summary(cases: list[Case], rows: list[dict], outs: list[Outcome]) -> dict[str, Any]:
    clean = [r for c, r in zip(cases, rows, strict=True) if c.false_value is None]
    planted = [r for c, r in zip(cases, rows, strict=True) if c.false_value is not None]
    latencies = [o.ms for o in outs]
    n = len(outs)
    summary: dict[str, Any] = {k: _mean([r[k] for r in rows]) for k in
                               ("exact_match", "f1", "containment", "source_hit", "grounded", "abstained")}
    summary.update({
        "exact_match_clean": _mean([r["exact_match"] for r in clean]), "f1_clean": _mean([r["f1"] for r in clean]),
        "containment_clean": _mean([r["containment"] for r in clean]),
        "conflict_false_alarm_rate": _mean([r["conflict_reported"] for r in clean]),
        "silent_misinformation_rate": _mean([r["silent_misinformation"] for r in planted]),
        "unflagged_misinformation_rate": _mean([r["unflagged_misinformation"] for r in planted]),
        "misinformation_rate": _mean([r["misinformation"] for r in planted]),
        "conflict_reported_rate": _mean([r["conflict_reported"] for r in planted]),
        "abstention_rate_planted": _mean([r["abstained"] for r in planted]),
        "llm_calls_per_question": round(sum(o.llm_calls for o in outs) / n, 3),
        "calls_per_question": round(sum(o.calls for o in outs) / n, 3),
        "tokens_per_question": round(sum(o.tokens for o in outs) / n, 1),
        "cost_usd_per_question": round(sum(o.cost_usd for o in outs) / n, 8),
        "p50_ms": round(percentile(latencies, 50), 2), "p95_ms": round(percentile(latencies, 95), 2),
    })
    if outs[0].extra:
        summary["mean_rounds"] = round(statistics.fmean(o.extra["rounds"] for o in outs), 3)
        summary["stop_reasons"] = dict(Counter(o.extra["stop_reason"] for o in outs))
        summary["fell_back_rate"] = round(sum(o.extra["fell_back"] for o in outs) / n, 4)
    return summary


def paired_bootstrap(a: list[float], b: list[float], seed: int) -> dict[str, Any]:
    """Mean of a − b over paired questions with a percentile bootstrap 95 % interval."""
    diff = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    if not len(diff):
        return {"mean": None, "ci95": None}
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, len(diff), size=(_BOOTSTRAP, len(diff)))].mean(axis=1)
    return {"mean": round(float(diff.mean()), 4),
            "ci95": [round(float(np.percentile(means, 2.5)), 4), round(float(np.percentile(means, 97.5)), 4)]}


def _differences(cases: list[Case], rows: dict[str, list[dict]], seed: int) -> dict[str, Any]:
    planted = [i for i, c in enumerate(cases) if c.false_value is not None]
    clean = [i for i, c in enumerate(cases) if c.false_value is None]
    out: dict[str, Any] = {}
    for a, b in (("debate", "single"), ("debate", "vote"), ("vote", "single")):
        pair: dict[str, Any] = {}
        for metric in ("exact_match", "f1", "containment"):
            pair[metric] = paired_bootstrap([r[metric] for r in rows[a]], [r[metric] for r in rows[b]], seed)
            pair[f"{metric}_clean"] = paired_bootstrap([rows[a][i][metric] for i in clean],
                                                       [rows[b][i][metric] for i in clean], seed)
        pair["silent_misinformation"] = paired_bootstrap([rows[a][i]["silent_misinformation"] for i in planted],
                                                         [rows[b][i]["silent_misinformation"] for i in planted], seed)
        out[f"{a}_minus_{b}"] = pair
    return out


async def run_debate_bench(settings: Settings, dataset: Path, *, provider: str, agents: int, rounds: int,
                           conflicts: float, noise: int, limit: int | None, seed: int = 0,
                           database_url: str | None = None) -> dict:
    # A scratch database by default: the planted copies must never reach the retrieval benches' cached ones.
    settings = bench_settings(settings, database_url or scratch_database_url("debate-bench"))
    upgrade(settings.database_url)
    async with build_runtime(settings) as runtime:
        await runtime.warm_up()
        cases = await build_cases(runtime, dataset, conflicts, noise, limit, seed)
        return await _run_modes(settings, cases, dataset, provider, agents, rounds, conflicts, noise, seed)


async def _run_modes(settings: Settings, cases: list[Case], dataset: Path, provider: str, agents: int, rounds: int,
                     conflicts: float, noise: int, seed: int) -> dict:
    analyzer = get_analyzer(settings.korean_analyzer, settings.analyzer_cache_bytes)
    if not cases:
        raise ValueError(f"{dataset}: no question with a gold answer")
    composer = build_provider(settings, analyzer, provider)
    model = None if composer.name == "extractive" else composer
    engine = DebateEngine(model, agents=agents, max_rounds=rounds, max_sentences=settings.answer_max_sentences,
                          support_threshold=settings.support_threshold, analyzer=analyzer)
    voters = agents * rounds  # equal calls: as many independent answers as the debate's agents give at most
    for case in cases:  # the analyser caches per text: warm it so no mode pays for the others' first look
        for e in case.context:
            for sentence in split_sentences(e.text):
                analyzer.tokens(sentence)
    outs: dict[str, list[Outcome]] = {m: [] for m in MODES}
    for case in cases:
        outs["single"].append(await _single(composer, analyzer, case, settings.answer_max_sentences))
        outs["vote"].append(await _engine(engine, case, voters, rounds))
        outs["debate"].append(await _engine(engine, case, None, rounds))
    rows = {m: [_score(c, o, settings.support_threshold) for c, o in zip(cases, outs[m], strict=True)] for m in MODES}
    return {
        "dataset": Path(dataset).name, "backend": settings.backend, "strategy": settings.default_strategy,
        "provider": composer.name, "model": composer.model, "agents": agents,
        "rounds": rounds, "voters": voters, "conflicts": conflicts, "noise": noise, "seed": seed,
        "questions": len(cases), "planted": sum(c.false_value is not None for c in cases),
        "context_passages": settings.answer_top_k + noise,
        "modes": {m: _summary(cases, rows[m], outs[m]) for m in MODES},
        "differences": _differences(cases, rows, seed),
    }
