"""One async interface for answer composers: the extractive composer and real LLMs alike."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Literal, Protocol

Mode = Literal["answer", "summary", "keypoints"]


@dataclass(frozen=True)
class Evidence:
    chunk_id: int
    doc_id: str
    title: str
    text: str
    score: float
    source_url: str | None = None


@dataclass(frozen=True)
class ComposeRequest:
    question: str
    language: str  # "ko" | "en": the answer's language
    mode: Mode
    evidence: tuple[Evidence, ...]
    max_sentences: int = 3


@dataclass
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0

    def __add__(self, other: Usage) -> Usage:
        return Usage(self.input_tokens + other.input_tokens, self.output_tokens + other.output_tokens,
                     round(self.cost_usd + other.cost_usd, 8))

    def assign(self, other: Usage) -> None:
        """Fill a caller's usage in place (streams and judges report it through an argument)."""
        self.input_tokens, self.output_tokens, self.cost_usd = other.input_tokens, other.output_tokens, other.cost_usd


@dataclass
class Generation:
    text: str
    provider: str
    model: str
    usage: Usage = field(default_factory=Usage)


class LLMError(RuntimeError):
    """A provider failed after its retries (rate limited, server error, malformed reply)."""


def estimated_tokens(text: str) -> int:
    """Usage for a server that reports none: subword tokenizers give about one token per 3 UTF-8 bytes of
    English and fewer bytes per token of Hangul, so this errs high, as a bill should."""
    return (len(text.encode("utf-8")) + 2) // 3 if text else 0


def priced(input_tokens: int, output_tokens: int, input_cost_per_mtok: float, output_cost_per_mtok: float) -> Usage:
    return Usage(input_tokens, output_tokens,
                 round((input_tokens * input_cost_per_mtok + output_tokens * output_cost_per_mtok) / 1e6, 8))


class AnswerProvider(Protocol):
    name: str
    model: str
    can_judge: bool  # whether `judge` asks a model (llm_validation is skipped otherwise)

    async def generate(self, request: ComposeRequest) -> Generation: ...

    def stream(self, request: ComposeRequest, usage: Usage) -> AsyncIterator[str]:
        """Text pieces as they come; fills `usage` when the stream ends."""
        ...

    async def judge(self, question: str, answer: str, evidence: tuple[Evidence, ...], usage: Usage) -> bool | None:
        """Whether the evidence supports the answer (None: no model to ask); fills `usage`."""
        ...
