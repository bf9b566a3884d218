"""When agents agree, and when their sources contradict each other.

Agreement is the token F1 (Dice) of what two answers assert beyond the question's own words: a
restatement of the question agrees with anything, so those terms are left out.

Token overlap alone would call a passage and its doctored copy agreeing: they differ in a handful of
tokens, the very ones that answer the question. So a contradiction is checked separately: two
verified claims from different documents, each asserting a term beyond the question that the other
lacks, and about the same thing. Either the claims say nearly the same (term Jaccard ≥ ALIGNED: the
same statement with a different value in it), or their sources are near-duplicates (chunk-term
Jaccard ≥ NEAR_DUPLICATE) and each claim has a term the other copy never mentions: where two copies
of one text differ is exactly what they dispute. Claims that share less are different statements,
possibly complementary, and are left to the agreement score. Lexical checks catch edited copies and
swapped values, not paraphrased misinformation: that takes a model judge.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import combinations

from apps.orchestration.src.debate.claims import sentence_claims
from apps.orchestration.src.debate.context import DebateContext
from apps.orchestration.src.debate.types import Claim, Turn

ALIGNED = 0.5
NEAR_DUPLICATE = 0.6


def content_terms(ctx: DebateContext, claims: Iterable[Claim]) -> set[str]:
    return {t for c in claims for t in ctx.analyzer.tokens(c.text)} - ctx.question_terms


def agreement(ctx: DebateContext, a: Sequence[Claim], b: Sequence[Claim]) -> float:
    ta, tb = content_terms(ctx, a), content_terms(ctx, b)
    if not ta and not tb:
        return 1.0
    return 2 * len(ta & tb) / (len(ta) + len(tb))


def _jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b) if a or b else 0.0


def _other_documents(ctx: DebateContext, a: Claim, b: Claim) -> list[tuple[int, int]]:
    """Chunk pairs from different documents: one document's chunks overlap by construction, and a
    document is not said to dispute itself."""
    def doc(i: int) -> str:
        return ctx.chunk(i).doc_id or f"chunk:{i}"
    return [(x, y) for x in a.chunk_ids for y in b.chunk_ids if x != y and doc(x) != doc(y)]


def contradicts(ctx: DebateContext, a: Claim, b: Claim) -> bool:
    pairs = _other_documents(ctx, a, b)
    if not pairs:
        return False
    ta, tb = set(ctx.analyzer.tokens(a.text)), set(ctx.analyzer.tokens(b.text))
    only_a, only_b = ta - tb - ctx.question_terms, tb - ta - ctx.question_terms
    if not only_a or not only_b:
        return False  # one adds to the other, or they say the same
    if _jaccard(ta, tb) >= ALIGNED:
        return True
    return any(_jaccard(ctx.terms[x], ctx.terms[y]) >= NEAR_DUPLICATE and only_a - ctx.terms[y]
               and only_b - ctx.terms[x] for x, y in pairs)


def counter_claim(ctx: DebateContext, claim: Claim, candidates: Iterable[Claim]) -> Claim | None:
    """The candidate (a sentence of one's own evidence) that contradicts `claim` most directly."""
    terms = set(ctx.analyzer.tokens(claim.text))
    against = [c for c in candidates if c.verified and contradicts(ctx, c, claim)]
    return max(against, key=lambda c: _jaccard(terms, set(ctx.analyzer.tokens(c.text))), default=None)


def find_conflicts(ctx: DebateContext, claims: Iterable[Claim]) -> list[tuple[Claim, Claim]]:
    distinct = list(dict.fromkeys(c for c in claims if c.verified))
    return [(a, b) for a, b in combinations(distinct, 2) if contradicts(ctx, a, b)]


def positions_agree(ctx: DebateContext, a: Turn, b: Turn, threshold: float) -> bool:
    return agreement(ctx, a.verified, b.verified) >= threshold and not find_conflicts(ctx, a.verified + b.verified)


def conflicts(ctx: DebateContext, turns: Sequence[Turn]) -> list[tuple[Claim, Claim]]:
    """What stands against the answering agents' verified claims: each other's claims, and any sentence
    of any agent's evidence. Agents that agree on shared sentences may not have quoted the sentence of a
    copy that says otherwise; the evidence is checked too, so neither the consensus nor the vote can
    pass over it."""
    claims = list(dict.fromkeys(c for t in turns if t.answering for c in t.verified))
    pairs = {frozenset(p): p for p in find_conflicts(ctx, claims)}
    evidence = sentence_claims(ctx, {i: ctx.chunk(i) for t in turns for i in t.view}.values())
    for claim in claims:
        counter = counter_claim(ctx, claim, evidence)
        if counter is not None:
            pairs.setdefault(frozenset((claim, counter)), (claim, counter))
    return list(pairs.values())


@dataclass
class Assessment:
    agreement: float  # lowest pairwise agreement among the answering agents
    conflicts: list[tuple[Claim, Claim]] = field(default_factory=list)
    consensus: bool = False


def assess(ctx: DebateContext, turns: Sequence[Turn], threshold: float) -> Assessment:
    """Consensus: at least two agents answer (one, if only one was given evidence), every pair of them
    agrees, and nothing contradicts their verified claims. An abstaining agent does not object to the
    others' consensus, but is no voice for it either."""
    answering = [t for t in turns if t.answering]
    if not answering:  # agreeing that the documents do not say is a consensus too
        everyone_abstained = bool(turns) and all(t.error is None and t.abstained for t in turns)
        return Assessment(1.0 if everyone_abstained else 0.0, [], everyone_abstained)
    disputes = conflicts(ctx, turns)
    lowest = min((agreement(ctx, a.verified, b.verified) for a, b in combinations(answering, 2)), default=1.0)
    enough = len(answering) >= min(2, len(turns))
    return Assessment(round(lowest, 4), disputes, enough and lowest >= threshold and not disputes)
