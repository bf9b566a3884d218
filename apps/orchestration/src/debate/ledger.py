"""The cost ledger of one debate: calls as they are made, tokens and cost as they come back, and the
token budget that every model call reserves against before it is sent."""

from __future__ import annotations

from dataclasses import dataclass, field

from apps.llm.base import Usage


def estimate_tokens(text: str) -> int:
    """Deliberately high: about two characters a token (English runs near four, Korean near two), so a
    reservation is rarely short of what the call really costs."""
    return len(text) // 2 + 1


@dataclass
class Ledger:
    max_tokens: int  # the request's budget over every call, prompt and output tokens alike
    calls: int = 0
    llm_calls: int = 0
    usage: Usage = field(default_factory=Usage)
    reserved: int = 0

    @property
    def spent(self) -> int:
        return self.usage.input_tokens + self.usage.output_tokens

    def reserve(self, tokens: int) -> bool:
        if self.spent + self.reserved + tokens > self.max_tokens:
            return False
        self.reserved += tokens
        return True

    def start(self, model: bool) -> None:
        self.calls += 1
        self.llm_calls += model

    def settle(self, reserved: int, usage: Usage) -> None:
        self.reserved -= reserved
        self.usage.input_tokens += usage.input_tokens
        self.usage.output_tokens += usage.output_tokens
        self.usage.cost_usd = round(self.usage.cost_usd + usage.cost_usd, 8)
