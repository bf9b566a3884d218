"""Grounding as pure functions: which chunks an answer's sentences cite, how well each chunk supports
them, and the answer's confidence. The answer graph and the debate engine both judge claims here."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from apps.llm.base import Evidence
from apps.text.analyzer import Analyzer
from apps.text.sentences import split_sentences

_MARKER = re.compile(r"(?<!\s)\s*\[(\d+)\]")  # starts only where a whitespace run starts: linear
_LEADING_MARKERS = re.compile(r"^(\s*\[\d+\])+\s*")


@dataclass(frozen=True)
class Citation:
    sentence: str
    chunk_ids: list[int] = field(default_factory=list)
    support: float = 0.0


def answer_sentences(answer: str) -> list[tuple[str, list[int]]]:
    """Answer sentences with the source numbers (1-based) their [n] markers cite. A marker that follows a
    sentence's final period ("... loss. [1]") belongs to that sentence, not the next."""
    out: list[tuple[str, list[int]]] = []
    for line in answer.splitlines():
        for sentence in split_sentences(line.lstrip("- ").strip()):
            leading = _LEADING_MARKERS.match(sentence)
            if leading and out:
                out[-1][1].extend(int(n) for n in _MARKER.findall(leading.group(0)))
                sentence = sentence[leading.end():]
            cited = [int(n) for n in _MARKER.findall(sentence)]
            text = _MARKER.sub("", sentence).strip()
            if text:
                out.append((text, cited))
    return out


def chunk_terms(analyzer: Analyzer, evidence: Sequence[Evidence]) -> dict[int, set[str]]:
    return {e.chunk_id: set(analyzer.tokens(f"{e.title}\n{e.text}")) for e in evidence}


def support(analyzer: Analyzer, sentence: str, terms: set[str]) -> float:
    """Share of the sentence's content terms found in a chunk's terms."""
    tokens = set(analyzer.tokens(sentence))
    if not tokens:
        return 1.0
    return len(tokens & terms) / len(tokens)


def cite(analyzer: Analyzer, answer: str, evidence: Sequence[Evidence]) -> list[Citation]:
    """One citation per answer sentence: the chunks its markers name and the best support among them."""
    terms = chunk_terms(analyzer, evidence)
    citations = []
    for sentence, cited in answer_sentences(answer):
        sources = [evidence[n - 1] for n in cited if 1 <= n <= len(evidence)]
        best = max((support(analyzer, sentence, terms[e.chunk_id]) for e in sources), default=0.0)
        citations.append(Citation(sentence, [e.chunk_id for e in sources], round(best, 3)))
    return citations


def track(analyzer: Analyzer, citations: Sequence[Citation], evidence: Sequence[Evidence],
          threshold: float) -> tuple[list[Citation], list[str]]:
    """Every sentence mapped to all chunks that support it (best first), and the sentences none supports."""
    terms = chunk_terms(analyzer, evidence)
    tracked, unsupported = [], []
    for citation in citations:
        supports = [(chunk_id, support(analyzer, citation.sentence, t)) for chunk_id, t in terms.items()]
        backing = sorted((s for s in supports if s[1] >= threshold), key=lambda s: -s[1])
        if not backing:
            unsupported.append(citation.sentence)
        tracked.append(replace(citation, chunk_ids=[c for c, _ in backing] or citation.chunk_ids,
                               support=round(max((s for _, s in supports), default=0.0), 3)))
    return tracked, unsupported


def confidence(citations: Sequence[Citation], evidence: Sequence[Evidence]) -> float:
    """Mean support of the answer's sentences, discounted when even the best evidence scored low."""
    support_values = [c.support for c in citations]
    top = max((e.score for e in evidence), default=0.0)
    mean = sum(support_values) / len(support_values) if support_values else 0.0
    return round(mean * (0.5 + 0.5 * min(max(top, 0.0), 1.0)), 3)
