"""A debating agent: answers from its own share of the evidence, then revises against the others'
verified claims. With a model (`CompletionProvider`) it is prompted; without one it is the extractive
composer, which needs no model and still debates: in a later round it ranks its own sentences together
with the others' verified claims, and refuses those its own evidence contradicts."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

from apps.llm.base import ComposeRequest, Evidence, LLMError, Usage
from apps.llm.extractive import NOT_FOUND, ExtractiveProvider, Selected
from apps.orchestration.src.debate.agent_prompts import agent_prompt, is_abstention
from apps.orchestration.src.debate.agreement import counter_claim
from apps.orchestration.src.debate.claims import parse_claims, render, sentence_claims, verify
from apps.orchestration.src.debate.context import DebateContext
from apps.orchestration.src.debate.ledger import Ledger, estimate_tokens
from apps.orchestration.src.debate.types import Claim, CompletionProvider, Role, Turn
from apps.orchestration.src.debate.evidence_shares import ContextItem, as_evidence
from apps.text.analyzer import Analyzer, get_analyzer


def _reading_order(ctx: DebateContext, claim: Claim) -> tuple[int, int]:
    source = claim.chunk_ids[0]
    return ctx.numbers[source], ctx.chunk(source).text.find(claim.text)


class DebateAgent:
    def __init__(self, role: Role = "affirmative", max_tokens: int = 500, *,
                 provider: CompletionProvider | None = None, analyzer: Analyzer | None = None, index: int = 0,
                 agents: int = 2, max_sentences: int = 3, support_threshold: float = 0.5) -> None:
        self.role: Role = role
        self.max_tokens = max_tokens
        self.provider = provider
        self.index = index
        self.agents = agents
        self.max_sentences = max_sentences
        self.support_threshold = support_threshold
        self._analyzer = analyzer or get_analyzer("bigram")  # standalone: the model-free one
        self._extractive = ExtractiveProvider(self._analyzer)

    async def generate_answer(self, query: str, context: Sequence[ContextItem],
                              own_previous_answer: str | None = None, opponent_answer: str | None = None) -> str:
        """The original engine's call: one answer from `context`, revised against the previous answers
        when given (their [n] markers number `context`)."""
        evidence = as_evidence(context)
        ctx = DebateContext.build(self._analyzer, query, evidence, self.support_threshold)
        later = own_previous_answer is not None or opponent_answer is not None
        previous = self._replayed(ctx, own_previous_answer, self.index, self.role)
        opponent = self._replayed(ctx, opponent_answer, self.index + 1,
                                  "critical" if self.role == "affirmative" else "affirmative")
        turn = await self.take_turn(ctx, evidence, 2 if later else 1, previous, [opponent] if opponent else [],
                                    Ledger(max_tokens=1 << 62), timeout=None)
        if turn.error:
            raise LLMError(f"debate agent {self.index + 1}: {turn.error}")
        return turn.answer

    @staticmethod
    def _replayed(ctx: DebateContext, answer: str | None, agent: int, role: Role) -> Turn | None:
        if answer is None:
            return None
        view = tuple(e.chunk_id for e in ctx.evidence)
        return Turn(agent, role, 0, view, answer, parse_claims(ctx, answer), abstained=is_abstention(answer))

    async def take_turn(self, ctx: DebateContext, view: tuple[Evidence, ...], round_: int, previous: Turn | None,
                        others: Sequence[Turn], ledger: Ledger, timeout: float | None) -> Turn:
        turn = Turn(self.index, self.role, round_, tuple(e.chunk_id for e in view))
        start = time.perf_counter()
        if self.provider is None:
            ledger.start(model=False)
            # Composition analyses every sentence (Korean morphology is CPU): off the event loop.
            await asyncio.to_thread(self._compose, ctx, view, others, turn)
        else:
            await self._ask(ctx, view, previous, others, ledger, timeout, turn)
        turn.elapsed_ms = (time.perf_counter() - start) * 1000
        return turn

    async def _ask(self, ctx: DebateContext, view: tuple[Evidence, ...], previous: Turn | None,
                   others: Sequence[Turn], ledger: Ledger, timeout: float | None, turn: Turn) -> None:
        assert self.provider is not None
        prompt = agent_prompt(ctx, self.role, self.index, self.agents, view, self.max_sentences, previous, others)
        reservation = estimate_tokens(prompt) + self.max_tokens
        if not ledger.reserve(reservation):
            turn.error = "budget"
            return
        ledger.start(model=True)
        try:
            async with asyncio.timeout(timeout):
                generation = await self.provider.complete(prompt, self.max_tokens)
        except TimeoutError:
            ledger.settle(reservation, Usage())
            turn.error = "timeout"
            return
        except Exception as exc:  # noqa: BLE001 - one agent's failure (LLMError, a lost connection) is not the debate's
            ledger.settle(reservation, Usage())
            turn.error = str(exc) if isinstance(exc, LLMError) else f"{type(exc).__name__}: {exc}"
            return
        turn.usage = generation.usage
        ledger.settle(reservation, generation.usage)
        turn.answer = generation.text
        turn.abstained = is_abstention(generation.text)
        turn.claims = [] if turn.abstained else parse_claims(ctx, generation.text)

    def _compose(self, ctx: DebateContext, view: tuple[Evidence, ...], others: Sequence[Turn], turn: Turn) -> None:
        """Memoryless: the same view and the same offered claims give the same answer, so its previous
        answer is what it would say again."""
        offered = list(dict.fromkeys(c for o in others for c in o.verified))
        # The critic's move: a claim that a sentence of my own evidence contradicts is refused, and that
        # sentence goes into my answer, so the dispute stays on the table instead of being outvoted.
        mine = sentence_claims(ctx, view)
        counters: dict[Claim, None] = {}
        for claim in offered:
            counter = counter_claim(ctx, claim, mine)
            if counter is not None:
                turn.rebutted.append(claim)
                counters[counter] = None
        accepted = [c for c in offered if c not in turn.rebutted]
        # Twice the sentences asked for, then one of each text: near-duplicate sources repeat sentences.
        request = ComposeRequest(ctx.question, ctx.language, "answer", view + self._quotes(ctx, view, accepted),
                                 2 * self.max_sentences)
        best: dict[str, Selected] = {}
        for c in sorted(self._extractive.select(request), key=lambda c: -c.score):
            best.setdefault(c.sentence, c)
        ranked = [verify(ctx, c.sentence, (request.evidence[c.source].chunk_id,)) for c in best.values()]
        kept = [c for c in ranked if c.text not in {k.text for k in counters}]
        claims = list(counters) + kept[: max(0, self.max_sentences - len(counters))]
        turn.claims = sorted(claims, key=lambda c: _reading_order(ctx, c))
        turn.abstained = not turn.claims
        turn.answer = render(ctx, turn.claims) if turn.claims else NOT_FOUND[ctx.language]

    @staticmethod
    def _quotes(ctx: DebateContext, view: tuple[Evidence, ...], claims: Sequence[Claim]) -> tuple[Evidence, ...]:
        """Others' verified claims as evidence the composer ranks beside its own: each under its source's
        id and retrieval score, so it competes on the same terms as the agent's own sentences."""
        seen = {e.chunk_id for e in view}
        texts: dict[int, list[str]] = {}
        for claim in claims:
            source = claim.chunk_ids[0]
            if source not in seen and not any(claim.text in e.text for e in view):
                texts.setdefault(source, []).append(claim.text)
        return tuple(Evidence(i, ctx.chunk(i).doc_id, ctx.chunk(i).title, "\n".join(t), ctx.chunk(i).score)
                     for i, t in texts.items())
