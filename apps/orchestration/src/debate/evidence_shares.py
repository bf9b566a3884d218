"""The retrieved passages as evidence, and each agent's share of them.

Agents get disjoint round-robin shares (agent i: ranks i, i+N, i+2N ...), and nobody is also handed
the top passage. Agreement between agents is worth something only when they read different evidence
(MADAM-RAG gives each agent one document); a passage every agent sees would make them agree on it
whether it is right or a poisoned copy. With round-robin the two best passages, which are a passage
and its doctored copy when someone planted one, land with different agents, and the conflict
surfaces as a disagreement instead of being averaged away inside one composer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import mmh3

from apps.llm.base import Evidence

ContextItem = Evidence | Mapping[str, Any]


def _chunk_id(raw: Any, rank: int) -> int:
    if raw is None:
        return rank + 1
    if isinstance(raw, int):
        return raw
    text = str(raw)
    return int(text) if text.isdigit() else mmh3.hash(text, signed=False)  # a stable id for string keys


def as_evidence(context: Sequence[ContextItem]) -> tuple[Evidence, ...]:
    """Evidence objects pass through; dicts (`text`, and optionally `chunk_id`, `title`, `doc_id`,
    `score`, `source_url`), as the original engine took them, become Evidence in the given rank order."""
    out: dict[int, Evidence] = {}  # a chunk retrieved twice is one source
    for rank, item in enumerate(context):
        if isinstance(item, Evidence):
            out.setdefault(item.chunk_id, item)
            continue
        text = str(item.get("text") or "")
        if not text.strip():
            continue
        score = item.get("score")
        evidence = Evidence(
            chunk_id=_chunk_id(item.get("chunk_id"), rank), doc_id=str(item.get("doc_id") or ""),
            title=str(item.get("title") or ""), text=text,
            score=float(score) if score is not None else 1.0 / (rank + 1), source_url=item.get("source_url"),
        )
        out.setdefault(evidence.chunk_id, evidence)
    return tuple(out.values())


def evidence_shares(evidence: tuple[Evidence, ...], agents: int) -> list[tuple[Evidence, ...]]:
    """One share per agent; never more agents than passages (an agent with nothing to read adds nothing)."""
    n = max(1, min(agents, len(evidence)))
    return [evidence[i::n] for i in range(n)]
