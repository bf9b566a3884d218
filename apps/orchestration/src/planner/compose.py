"""Answering a plan part by part: the composer answers each part from that part's own evidence (all
parts at once), and the answer is one section per part, in order:

    1. <part>
    <its answer, citing [n]>

    2. <part>
    The documents do not contain an answer to this question.   ← a part with no evidence says so

A part's composer numbers its sources 1..m within the part's evidence; its markers are renumbered to
the same chunks' places in the whole context (`sources`) as the text streams, so every [n] in the answer
means one source. Headings cite nothing and stay out of citations and validation."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from apps.llm.base import AnswerProvider, ComposeRequest, Evidence, Mode, Usage
from apps.llm.extractive import NOT_FOUND
from apps.orchestration.src import grounding
from apps.orchestration.src.planner.plan import PlanPart
from apps.text.analyzer import Analyzer

_MARKER = re.compile(r"\[(\d{1,4})\]")
_OPEN_MARKER_CHARS = 6  # "[" and up to four digits and "]": longer is not a marker


@dataclass(frozen=True)
class Section:
    index: int  # the part's place in the plan
    heading: str
    body: str
    answered: bool  # False: no evidence, or nothing in it answered the part; the body says so
    citations: tuple[grounding.Citation, ...] = ()


class MarkerRenumberer:
    """[n] markers of a part's answer → the whole context's numbers, across stream pieces (a marker can
    arrive split in two: "[1" then "2]")."""

    def __init__(self, mapping: dict[int, int]) -> None:
        self._mapping = mapping
        self._pending = ""

    def _renumber(self, text: str) -> str:
        return _MARKER.sub(lambda m: f"[{self._mapping.get(int(m.group(1)), int(m.group(1)))}]", text)

    def feed(self, piece: str) -> str:
        text = self._pending + piece
        cut = text.rfind("[")
        tail = text[cut + 1:] if cut >= 0 else ""
        if cut >= 0 and len(text) - cut < _OPEN_MARKER_CHARS and (not tail or tail.isdigit()):
            self._pending, text = text[cut:], text[:cut]  # maybe a marker still arriving
        else:
            self._pending = ""
        return self._renumber(text)

    def flush(self) -> str:
        text, self._pending = self._pending, ""
        return self._renumber(text)


def heading(index: int, part: PlanPart) -> str:
    return f"{index + 1}. {part.text}"


async def compose_parts(provider: AnswerProvider, parts: Sequence[PlanPart],
                        part_evidence: Sequence[Sequence[Evidence]], evidence: Sequence[Evidence], language: str,
                        mode: Mode, max_sentences: int, write: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    """All parts composed concurrently; their text streamed (`write({"token": ...})`) in part order."""
    place = {e.chunk_id: n for n, e in enumerate(evidence, start=1)}
    queues: list[asyncio.Queue[str | None]] = [asyncio.Queue() for _ in parts]
    usages = [Usage() for _ in parts]

    async def run(i: int) -> None:
        try:
            own = list(part_evidence[i])
            if not own:
                return
            renumber = MarkerRenumberer({n: place[e.chunk_id] for n, e in enumerate(own, start=1)})
            request = ComposeRequest(parts[i].text, language, mode, tuple(own), max_sentences)
            async for piece in provider.stream(request, usages[i]):
                if out := renumber.feed(piece):
                    await queues[i].put(out)
            if out := renumber.flush():
                await queues[i].put(out)
        finally:
            await queues[i].put(None)

    tasks = [asyncio.create_task(run(i)) for i in range(len(parts))]
    try:
        sections: list[Section] = []
        pieces: list[str] = []
        for i, part in enumerate(parts):
            head = heading(i, part)
            opening = ("\n\n" if i else "") + head + "\n"
            pieces.append(opening)
            write({"token": opening})
            body: list[str] = []
            while (piece := await queues[i].get()) is not None:
                body.append(piece)
                write({"token": piece})
            text = "".join(body).strip()
            answered = bool(text) and text not in NOT_FOUND.values()
            if not text:
                text = NOT_FOUND[language if language in NOT_FOUND else "en"]
                write({"token": text})
            pieces.append(text)
            sections.append(Section(i, head, text, answered))
        await asyncio.gather(*tasks)  # a failed part raises here: the node falls back, as for one answer
    finally:
        for task in tasks:
            task.cancel()
    usage = Usage()
    for spent in usages:
        usage = usage + spent
    return {"answer": "".join(pieces).strip(), "model": provider.model, "provider": provider.name, "usage": usage,
            "sections": sections}


def cite_sections(analyzer: Analyzer, sections: Sequence[Section], evidence: Sequence[Evidence]) -> dict[str, Any]:
    """Citations of every answered section's sentences (headings and "not found" bodies claim nothing)."""
    cited = [replace(s, citations=tuple(grounding.cite(analyzer, s.body, evidence)) if s.answered else ())
             for s in sections]
    return {"sections": cited, "citations": [c for s in cited for c in s.citations]}


def part_evidence(parts: Sequence[PlanPart], evidence: Sequence[Evidence]) -> list[list[Evidence]]:
    """Each part's own passages (its hits, in context order), plus evidence no part retrieved (a tool's
    result added after retrieval), which every part may use."""
    owned = {cid for part in parts for cid in part.hits}
    shared = [e for e in evidence if e.chunk_id not in owned]
    return [[e for e in evidence if e.chunk_id in set(part.hits)] + shared for part in parts]


def part_qualities(parts: Sequence[PlanPart], sections: Sequence[Section], evidence: Sequence[Evidence]) -> list[float]:
    """Each part's groundedness (its section's citations against its own evidence): the implicit reward of
    the strategy that retrieved for it. A part never composed scores 0."""
    by_part = {s.index: s for s in sections}
    return [grounding.confidence(list(by_part[i].citations), own) if i in by_part else 0.0
            for i, own in enumerate(part_evidence(parts, evidence))]
