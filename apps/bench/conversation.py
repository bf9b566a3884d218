"""`dtrag bench conversation`: do follow-ups find what the question they stand for finds?

From a set whose questions name their subject (korquad-ko: the paragraph's title is in the question),
every such question becomes a follow-up: the subject replaced by a pronoun, or dropped (by a stable hash
of the query id, about half each). Each follow-up is asked after a history turn that names the subject:
another question about a paragraph with the same title (one about another paragraph first), else a
short question naming it. Retrieval is scored four ways (nDCG@10 over these questions):

- original: the question as the set has it;
- alone: the follow-up with no history (what a search without conversations makes of it);
- with_history: the follow-up, rewritten against the history turn (its question and its sources' titles)
  by the service's own rewriter, then searched;
- standalone_after_unrelated: the original question after a turn about another subject: a question that
  stands alone must come through untouched.

The history turns are searched like any question, and their top sources give the subject its titles, as
in the service. Latency is of the follow-up's rewrite and search together, and of the rewrite alone.
"""

from __future__ import annotations

import re
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import mmh3

from apps.bench.beir import BeirDataset
from apps.bench.metrics import Run, evaluate
from apps.bench.retrieval import DOC_DEPTH, doc_scores, ingest_dataset
from apps.core.config import Settings
from apps.core.migrations import upgrade
from apps.core.stats import percentile
from apps.orchestration.src.conversations import FollowupRewriter, HistoryTurn, turn_subject
from apps.runtime import Runtime, build_runtime
from apps.text.followups import attach, normalise_title
from apps.text.language import has_hangul

SOURCES = 5  # the history turn's sources whose titles name subjects (the answer pipeline's default top_k)
_KO_PARTICLES = ("에게서", "에서는", "으로는", "에게", "에서", "으로", "이란", "은", "는", "이", "가", "을", "를", "의",
                 "에", "와", "과", "도", "로", "만", "란")


@dataclass(frozen=True)
class Pair:
    qid: str
    question: str
    title: str  # the subject, as the question names it
    doc: str  # the relevant paragraph
    followup: str
    mode: str  # pronoun | drop


def _names(question: str, title: str) -> bool:
    if has_hangul(title):
        return title in question
    return re.search(rf"(?<!\w){re.escape(title)}(?!\w)", question, re.IGNORECASE) is not None


def _korean_followup(question: str, title: str, drop: bool) -> str:
    """Every mention of `title` (with the particle after it) as 그것/그 + particle, or left out."""
    out, rest = [], question
    while (at := rest.find(title)) >= 0:
        out.append(rest[:at])
        tail = rest[at + len(title):]
        particle = next((p for p in _KO_PARTICLES if tail.startswith(p) and (len(tail) == len(p) or not
                                                                             has_hangul(tail[len(p)]))), "")
        rest = tail[len(particle):]
        if drop:
            rest = rest.lstrip()
        elif particle:
            out.append(attach("그것", particle))
        else:
            out.append("그")  # a determiner before the noun that follows: "그 의원의"
    return " ".join("".join([*out, rest]).split())


def _english_followup(question: str, title: str, drop: bool) -> str:
    pattern = re.compile(rf"(?<!\w)(?:the\s+)?{re.escape(title)}('s|’s)?(?!\w)", re.IGNORECASE)

    def replace(match: re.Match[str]) -> str:
        if drop:
            return ""
        return "its" if match.group(1) else "it"

    text = " ".join(pattern.sub(replace, question).split())
    return text[:1].upper() + text[1:]


def followup(question: str, title: str, drop: bool) -> str:
    """`question` with its subject `title` replaced by a pronoun, or dropped."""
    if has_hangul(question):
        return _korean_followup(question, title, drop)
    return _english_followup(question, title, drop)


def _short_question(title: str) -> str:
    return f"{title}에 대해 알려줘" if has_hangul(title) else f"Tell me about {title}."


def build_pairs(dataset: BeirDataset, titles: dict[str, str]) -> list[Pair]:
    """The questions that name the title of their (first) relevant paragraph, each with its follow-up."""
    pairs = []
    for qid, question in dataset.queries.items():
        docs = [d for d, grade in dataset.qrels.get(qid, {}).items() if grade > 0]
        if not docs or docs[0] not in titles:
            continue
        title = normalise_title(titles[docs[0]])
        if len(title) < 2 or not _names(question, title):
            continue
        drop = mmh3.hash(qid, signed=False) % 2 == 1
        text = followup(question, title, drop)
        if text and text != question and not _names(text, title):
            pairs.append(Pair(qid, question, title, docs[0], text, "drop" if drop else "pronoun"))
    return pairs


def _pick(candidates: list[Pair], key: str) -> Pair | None:
    return candidates[mmh3.hash(key, signed=False) % len(candidates)] if candidates else None


def history_questions(pairs: list[Pair]) -> tuple[dict[str, str], dict[str, str]]:
    """Per pair: a history question naming its subject, and one about another subject."""
    by_title: dict[str, list[Pair]] = defaultdict(list)
    for pair in pairs:
        by_title[pair.title].append(pair)
    titles = sorted(by_title)
    same, unrelated = {}, {}
    for pair in pairs:
        others = [p for p in by_title[pair.title] if p.qid != pair.qid]
        chosen = _pick([p for p in others if p.doc != pair.doc], pair.qid) or _pick(others, pair.qid)
        same[pair.qid] = chosen.question if chosen else _short_question(pair.title)
        other_titles = [t for t in titles if t != pair.title]
        if other_titles:
            other = by_title[other_titles[mmh3.hash(pair.qid + "/unrelated", signed=False) % len(other_titles)]]
            unrelated[pair.qid] = _pick(other, pair.qid).question  # type: ignore[union-attr]
        else:
            unrelated[pair.qid] = _short_question("the weather")
    return same, unrelated


class _Searcher:
    def __init__(self, runtime: Runtime, strategy: str | None) -> None:
        self.runtime = runtime
        self.strategy = strategy
        self.depth = DOC_DEPTH + DOC_DEPTH // 2
        self._turns: dict[str, HistoryTurn] = {}

    async def scores(self, query: str) -> dict[str, float]:
        result = await self.runtime.search.search(query, top_k=self.depth, strategy=self.strategy)
        return doc_scores(result.hits)

    async def turn(self, question: str) -> HistoryTurn:
        """A history turn as the service stores it: searched, its subject from its sources' titles."""
        if question not in self._turns:
            result = await self.runtime.search.search(question, top_k=SOURCES, strategy=self.strategy)
            titles = tuple(h.title for h in result.hits)
            self._turns[question] = HistoryTurn(question, question, turn_subject(question, titles, None), "", titles)
        return self._turns[question]


async def bench_conversation(dataset: BeirDataset, settings: Settings, strategy: str | None = None,
                             limit: int | None = None) -> dict[str, Any]:
    upgrade(settings.database_url)
    async with build_runtime(settings) as runtime:
        if strategy is not None:
            runtime.search.resolve(strategy)
        ingest = await ingest_dataset(runtime, dataset)
        await runtime.warm_up()
        titles = {d.external_id: d.title for d in dataset.corpus(runtime.settings.max_document_bytes, [])
                  if d.external_id}
        pairs = build_pairs(dataset, titles)[:limit] if limit else build_pairs(dataset, titles)
        if not pairs:
            raise ValueError(f"{dataset.name}: no question names the title of its paragraph")
        same, unrelated = history_questions(pairs)
        searcher = _Searcher(runtime, strategy)
        rewriter = FollowupRewriter(search=runtime.search)  # the rules (no model), as the service runs them
        runs: dict[str, Run] = {"original": {}, "alone": {}, "with_history": {}, "standalone_after_unrelated": {}}
        rewritten = untouched = 0
        latencies: list[float] = []
        rewrite_ms: list[float] = []
        for pair in pairs:
            runs["original"][pair.qid] = await searcher.scores(pair.question)
            runs["alone"][pair.qid] = await searcher.scores(pair.followup)
            history = (await searcher.turn(same[pair.qid]),)
            start = time.perf_counter()
            rewrite = await rewriter.rewrite(pair.followup, history)
            runs["with_history"][pair.qid] = await searcher.scores(rewrite.question)
            latencies.append((time.perf_counter() - start) * 1000)
            rewrite_ms.append(rewrite.elapsed_ms)
            rewritten += rewrite.rewritten
            standalone = await rewriter.rewrite(pair.question, (await searcher.turn(unrelated[pair.qid]),))
            untouched += not standalone.rewritten
            runs["standalone_after_unrelated"][pair.qid] = await searcher.scores(standalone.question)
        qrels = {p.qid: dataset.qrels[p.qid] for p in pairs}
        scores = {name: {"ndcg@10": evaluate(qrels, run)["ndcg@10"]} for name, run in runs.items()}
        n = len(pairs)
        return {
            "dataset": dataset.name,
            "backend": settings.backend,
            "strategy": strategy or settings.default_strategy,
            "ingest": ingest,
            **scores,
            "pairs": n,
            "modes": {mode: sum(p.mode == mode for p in pairs) for mode in ("pronoun", "drop")},
            "rewrite_rate": round(rewritten / n, 4),
            "standalone_untouched_rate": round(untouched / n, 4),
            "p50_ms": round(percentile(latencies, 50), 2),
            "p95_ms": round(percentile(latencies, 95), 2),
            # The rewrite alone (the rules, and an ellipsis's own BM25 look-up), within the figures above.
            "rewrite_p50_ms": round(percentile(rewrite_ms, 50), 2),
            "rewrite_p95_ms": round(percentile(rewrite_ms, 95), 2),
        }
