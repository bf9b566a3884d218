"""The default composer: no model, deterministic. It picks the sentences of the retrieved chunks that
best cover the question's content terms, weighs them by how relevant their chunk was, and returns them
in reading order with their sources."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

from apps.llm.base import ComposeRequest, Evidence, Generation, Usage
from apps.text.analyzer import Analyzer
from apps.text.sentences import split_sentences

MODEL = "extractive-v1"
NOT_FOUND = {
    "en": "The documents do not contain an answer to this question.",
    "ko": "문서에서 이 질문에 대한 답을 찾을 수 없습니다.",
}
_CHUNK_WEIGHT = 0.35  # how much the chunk's retrieval relevance counts beside the sentence's own overlap


@dataclass(frozen=True)
class Selected:
    sentence: str
    source: int  # index into the evidence
    position: int
    score: float


class ExtractiveProvider:
    name = "extractive"
    model = MODEL
    can_judge = False

    def __init__(self, analyzer: Analyzer) -> None:
        self._analyzer = analyzer

    def select(self, request: ComposeRequest) -> list[Selected]:
        query = set(self._analyzer.tokens(request.question))
        if not request.evidence:
            return []
        top = max(e.score for e in request.evidence) or 1.0
        candidates: list[Selected] = []
        for index, evidence in enumerate(request.evidence):
            relevance = max(evidence.score, 0.0) / top if top > 0 else 0.0
            for position, sentence in enumerate(split_sentences(evidence.text)):
                tokens = set(self._analyzer.tokens(sentence))
                if not tokens:
                    continue
                coverage = len(query & tokens) / len(query) if query else 0.0
                if coverage == 0:
                    continue  # a sentence sharing no term with the question answers nothing
                score = coverage + _CHUNK_WEIGHT * relevance - 0.001 * position
                candidates.append(Selected(sentence, index, position, score))
        if not candidates:
            return []
        ranked = sorted(candidates, key=lambda c: (-c.score, c.source, c.position))
        if request.mode == "summary":  # breadth: the best sentence of each source first
            seen: set[int] = set()
            firsts = [c for c in ranked if not (c.source in seen or seen.add(c.source))]
            ranked = firsts + [c for c in ranked if c not in firsts]
        chosen = ranked[: request.max_sentences]
        return sorted(chosen, key=lambda c: (c.source, c.position))

    def render(self, request: ComposeRequest, chosen: list[Selected]) -> list[str]:
        if request.mode == "keypoints":
            return [f"- {c.sentence} [{c.source + 1}]" for c in chosen]
        return [f"{c.sentence} [{c.source + 1}]" for c in chosen]

    def lines(self, request: ComposeRequest) -> list[str]:
        chosen = self.select(request)
        return self.render(request, chosen) if chosen else [NOT_FOUND[request.language]]

    # Selection analyses every retrieved sentence (Korean morphology is CPU): off the event loop.
    async def generate(self, request: ComposeRequest) -> Generation:
        lines = await asyncio.to_thread(self.lines, request)
        joiner = "\n" if request.mode == "keypoints" else " "
        return Generation(text=joiner.join(lines), provider=self.name, model=self.model)

    async def stream(self, request: ComposeRequest, usage: Usage) -> AsyncIterator[str]:
        joiner = "\n" if request.mode == "keypoints" else " "
        for i, line in enumerate(await asyncio.to_thread(self.lines, request)):
            yield (joiner if i else "") + line

    async def judge(self, question: str, answer: str, evidence: tuple[Evidence, ...], usage: Usage) -> bool | None:
        return None  # no model to ask
