"""What goes into the answer graph and what comes out of it."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, Field

from apps.search.types import SearchFilters

AnswerMode = Literal["answer", "summary", "keypoints", "debate"]


@dataclass
class AnswerRequest:
    question: str
    mode: AnswerMode = "answer"  # "debate": an answer settled by the agents' debate
    top_k: int = 5
    filters: SearchFilters = field(default_factory=SearchFilters)
    strategy: str | None = None
    provider: str | None = None
    flags: dict[str, bool] | None = None  # per-request flag values; default: what the flag service serves
    variant: str = "legacy"  # the pipeline variant the rollout assigned (recorded with bandit decisions)
    request_id: str = field(default_factory=lambda: uuid.uuid4().hex)


class Source(BaseModel):
    chunk_id: int
    doc_id: str
    title: str
    source_url: str | None
    snippet: str


class CitationOut(BaseModel):
    sentence: str
    chunk_ids: list[int]
    support: float


class Validation(BaseModel):
    grounded: bool
    unsupported_sentences: list[str]
    llm_judgement: str | None = Field(None, description="only with the llm_validation flag")


class UsageOut(BaseModel):
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0


class DegradedNode(BaseModel):
    node: str
    reason: str


class DebateOut(BaseModel):
    rounds: int
    llm_calls: int
    stop_reason: str
    agreement: float
    conflict: bool
    judge: str | None
    fell_back: bool
    usage: UsageOut
    elapsed_ms: float
    agents: list[list[dict[str, Any]]] = Field(description="per round, per agent: answer, cited chunk ids, "
                                                           "verified and struck claims")


class AnswerResponse(BaseModel):
    question: str
    answer: str
    sources: list[Source]
    citations: list[CitationOut]
    confidence: float
    validation: Validation
    model: str
    provider: str
    language: str
    question_type: str
    strategy: str | None
    usage: UsageOut
    timings_ms: dict[str, float]
    degraded: bool
    degraded_nodes: list[DegradedNode]
    request_id: str
    debate: DebateOut | None = Field(None, description="with mode debate (or the debate_mode flag)")

    def llm_usage(self) -> dict[str, Any]:
        """What the request log records about the LLM behind this answer (nothing for no LLM)."""
        if self.provider == "none":
            return {}
        return {"llm_provider": self.provider, "llm_model": self.model,
                "llm_input_tokens": self.usage.input_tokens, "llm_output_tokens": self.usage.output_tokens,
                "llm_cost_usd": self.usage.cost_usd, "llm_ms": self.timings_ms.get("compose")}
