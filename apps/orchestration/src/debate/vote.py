"""The verdict without a model: agents' positions grouped by agreement, each agent's vote weighted by
its verified citations, and a conflict reported rather than settled when verified sources contradict
each other (MADAM-RAG's "several answers"): picking the heavier side would pass a planted copy off as
the answer whenever it happened to rank higher."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from apps.llm.extractive import NOT_FOUND
from apps.orchestration.src.debate.agent_prompts import CONFLICT_HEADER
from apps.orchestration.src.debate.agreement import conflicts, positions_agree
from apps.orchestration.src.debate.claims import render
from apps.orchestration.src.debate.context import DebateContext
from apps.orchestration.src.debate.types import Claim, Turn

MAX_SIDES = 4


@dataclass
class Verdict:
    claims: list[Claim] = field(default_factory=list)  # the answer; empty: the documents do not say
    sides: list[Claim] = field(default_factory=list)  # when verified sources conflict: one claim per side

    @property
    def conflict(self) -> bool:
        return len(self.sides) >= 2


def claim_weight(ctx: DebateContext, claim: Claim) -> float:
    return claim.support * max((ctx.relevance[i] for i in claim.chunk_ids), default=0.0) if claim.verified else 0.0


def weight(ctx: DebateContext, turn: Turn) -> float:
    """Mean over the agent's claims of support × its source's relevance: struck claims count zero, so
    an agent that asserted what its sources do not say carries less weight."""
    return sum(claim_weight(ctx, c) for c in turn.claims) / len(turn.claims) if turn.claims else 0.0


def weighted_vote(ctx: DebateContext, turns: Sequence[Turn], threshold: float, report_conflicts: bool) -> Verdict:
    positions = sorted((t for t in turns if t.answering), key=lambda t: (-weight(ctx, t), t.agent))
    if not positions:
        return Verdict()
    groups: list[list[Turn]] = []
    for position in positions:
        group = next((g for g in groups if positions_agree(ctx, g[0], position, threshold)), None)
        if group is None:
            groups.append([position])
        else:
            group.append(position)
    best = max(groups, key=lambda g: sum(weight(ctx, t) for t in g))  # ties: the group of the strongest agent
    if report_conflicts:
        pairs = conflicts(ctx, turns)
        sides = sorted(dict.fromkeys(c for pair in pairs for c in pair), key=lambda c: -claim_weight(ctx, c))
        if sides:
            return Verdict(best[0].verified, sides[:MAX_SIDES])
    return Verdict(best[0].verified)


def render_verdict(ctx: DebateContext, verdict: Verdict) -> tuple[str, str]:
    """The final answer, and the part of it that makes claims (what citations are computed on)."""
    if verdict.conflict:
        body = "\n".join(f"- {render(ctx, [c])}" for c in verdict.sides)
        return f"{CONFLICT_HEADER['ko' if ctx.language == 'ko' else 'en']}\n{body}", body
    if verdict.claims:
        body = render(ctx, verdict.claims)
        return body, body
    return NOT_FOUND["ko" if ctx.language == "ko" else "en"], ""
