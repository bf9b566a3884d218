"""What every agent, the judge and the verdict share in one debate: the question, the evidence with
its global source numbers, each chunk's terms and relevance."""

from __future__ import annotations

from dataclasses import dataclass

from apps.llm.base import Evidence
from apps.orchestration.src.grounding import chunk_terms
from apps.text.analyzer import Analyzer
from apps.text.language import detect_language


@dataclass(frozen=True)
class DebateContext:
    analyzer: Analyzer
    question: str
    language: str
    evidence: tuple[Evidence, ...]
    terms: dict[int, set[str]]  # chunk id -> its content terms (title and text)
    numbers: dict[int, int]  # chunk id -> its 1-based [n] in every prompt and answer of this debate
    relevance: dict[int, float]  # chunk id -> retrieval score relative to the best, in [0, 1]
    question_terms: frozenset[str]
    support_threshold: float

    @classmethod
    def build(cls, analyzer: Analyzer, question: str, evidence: tuple[Evidence, ...],
              support_threshold: float) -> DebateContext:
        top = max((e.score for e in evidence), default=0.0)
        relevance = {e.chunk_id: (min(max(e.score / top, 0.0), 1.0) if top > 0 else 1.0) for e in evidence}
        return cls(analyzer, question, detect_language(question), evidence, chunk_terms(analyzer, evidence),
                   {e.chunk_id: i for i, e in enumerate(evidence, start=1)}, relevance,
                   frozenset(analyzer.tokens(question)), support_threshold)

    def chunk(self, chunk_id: int) -> Evidence:
        return self.evidence[self.numbers[chunk_id] - 1]
