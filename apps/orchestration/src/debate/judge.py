"""The model judge: called only when agents still disagree after the last round. Its answer is checked
like any agent's (unsupported claims struck); with nothing verified left, the vote decides instead."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from apps.llm.base import LLMError, Usage
from apps.orchestration.src.debate.agent_prompts import CONFLICT, is_abstention, judge_prompt
from apps.orchestration.src.debate.claims import parse_claims
from apps.orchestration.src.debate.context import DebateContext
from apps.orchestration.src.debate.ledger import Ledger, estimate_tokens
from apps.orchestration.src.debate.types import CompletionProvider, Turn
from apps.orchestration.src.debate.vote import Verdict


class JudgeError(RuntimeError):
    pass


def parse_verdict(ctx: DebateContext, text: str) -> Verdict:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    conflict = bool(lines) and lines[0].strip().strip("*:").upper().startswith(CONFLICT)
    body = "\n".join(lines[1:] if conflict else lines)
    if is_abstention(body or text):
        return Verdict()
    verified = [c for c in parse_claims(ctx, body) if c.verified]
    if not verified:
        raise JudgeError("the judge's answer had no claim its sources support")
    return Verdict(verified, verified if conflict and len(verified) >= 2 else [])


async def llm_judge(ctx: DebateContext, provider: CompletionProvider, positions: Sequence[Turn], max_sentences: int,
                    max_tokens: int, ledger: Ledger, timeout: float | None) -> Verdict:
    prompt = judge_prompt(ctx, positions, max_sentences)
    reservation = estimate_tokens(prompt) + max_tokens
    if not ledger.reserve(reservation):
        raise JudgeError("budget")
    ledger.start(model=True)
    try:
        async with asyncio.timeout(timeout):
            generation = await provider.complete(prompt, max_tokens)
    except TimeoutError:
        ledger.settle(reservation, Usage())
        raise JudgeError("timeout") from None
    except Exception as exc:  # noqa: BLE001 - the vote stands in for a judge that failed in any way
        ledger.settle(reservation, Usage())
        raise JudgeError(str(exc) if isinstance(exc, LLMError) else f"{type(exc).__name__}: {exc}") from None
    ledger.settle(reservation, generation.usage)
    return parse_verdict(ctx, generation.text)
