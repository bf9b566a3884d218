"""What a plan is: the parts a question asks, who planned them, and what each part retrieved."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Literal

from apps.llm.base import Usage

Planner = Literal["rule", "model"]


@dataclass(frozen=True)
class PlanPart:
    text: str  # the part as asked (shown to the user, given to the composer)
    query: str  # what the part searches (its text, plus a topic it refers back to)
    strategy: str | None = None  # set once the part was retrieved
    hits: tuple[int, ...] = ()  # chunk ids of the part's evidence in the merged context


@dataclass(frozen=True)
class Plan:
    question: str
    parts: tuple[PlanPart, ...]
    planner: Planner
    kind: str  # the rule that split it (`apps.text.compound.KINDS`), or "model"
    elapsed_ms: float
    fell_back: str | None = None  # why a model's plan was refused for the rule planner's
    usage: Usage = field(default_factory=Usage)  # what planning cost (a model's tokens)

    @property
    def compound(self) -> bool:
        return len(self.parts) > 1

    def retrieved(self, parts: list[tuple[str | None, list[int]]]) -> Plan:
        """This plan with each part's strategy and evidence chunk ids filled in."""
        return replace(self, parts=tuple(replace(p, strategy=strategy, hits=tuple(hits))
                                         for p, (strategy, hits) in zip(self.parts, parts, strict=True)))

    def to_dict(self) -> dict[str, Any]:
        """The response's `plan`: {parts: [{text, query, strategy, hits}], planner, kind, elapsed_ms, fell_back}."""
        return {"parts": [{"text": p.text, "query": p.query, "strategy": p.strategy, "hits": list(p.hits)}
                          for p in self.parts],
                "planner": self.planner, "kind": self.kind, "elapsed_ms": self.elapsed_ms,
                "fell_back": self.fell_back}
