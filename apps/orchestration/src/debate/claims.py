"""Claims: an answer's sentences with the chunks they cite, checked against those chunks.

A claim stands only if a chunk it cites supports it (grounding.support ≥ the threshold); the others
are struck, so no agent argues from them in the next round and none reaches the final answer.
"""

from __future__ import annotations

from collections.abc import Iterable

from apps.llm.base import Evidence
from apps.orchestration.src.debate.context import DebateContext
from apps.orchestration.src.debate.types import Claim
from apps.orchestration.src.grounding import answer_sentences, support
from apps.text.sentences import split_sentences


def verify(ctx: DebateContext, text: str, chunk_ids: Iterable[int]) -> Claim:
    cited = tuple(dict.fromkeys(i for i in chunk_ids if i in ctx.terms))
    if not ctx.analyzer.tokens(text):  # a sentence with no content term asserts nothing checkable
        return Claim(text, cited, 0.0, False)
    best = max((support(ctx.analyzer, text, ctx.terms[i]) for i in cited), default=0.0)
    return Claim(text, cited, round(best, 3), bool(cited) and best >= ctx.support_threshold)


def sentence_claims(ctx: DebateContext, evidence: Iterable[Evidence]) -> list[Claim]:
    """Every sentence of the evidence as a claim citing its chunk."""
    return [verify(ctx, sentence, (e.chunk_id,)) for e in evidence for sentence in split_sentences(e.text)]


def parse_claims(ctx: DebateContext, answer: str) -> list[Claim]:
    """A model's answer, whose [n] markers are the debate's global source numbers."""
    n = len(ctx.evidence)
    return [verify(ctx, sentence, (ctx.evidence[k - 1].chunk_id for k in cited if 1 <= k <= n))
            for sentence, cited in answer_sentences(answer)]


def markers(ctx: DebateContext, claim: Claim) -> str:
    return "".join(f"[{ctx.numbers[i]}]" for i in claim.chunk_ids)


def render(ctx: DebateContext, claims: Iterable[Claim]) -> str:
    return " ".join(f"{c.text} {markers(ctx, c)}".strip() for c in claims)


def quote(ctx: DebateContext, claim: Claim) -> str:
    """The sentence of the claim's best cited chunk that shares most terms with it: what an agent that
    cannot see that chunk is shown as the claim's evidence."""
    claim_terms = set(ctx.analyzer.tokens(claim.text))
    best, best_overlap = "", -1
    for chunk_id in claim.chunk_ids:
        for sentence in split_sentences(ctx.chunk(chunk_id).text):
            overlap = len(claim_terms & set(ctx.analyzer.tokens(sentence)))
            if overlap > best_overlap:
                best, best_overlap = sentence, overlap
    return best
