"""What goes into the answer graph and what comes out of it."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, Field

from apps.orchestration.src.conversations.types import HistoryTurn
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
    history: tuple[HistoryTurn, ...] = ()  # the conversation's recent turns: a follow-up is rewritten against them
    asked: str | None = None  # set by the rewrite node: the question as asked, when `question` is its rewrite


class Source(BaseModel):
    chunk_id: int
    doc_id: str
    title: str
    source_url: str | None
    snippet: str
    case_ids: list[int] | None = Field(None, description="with case memory on: the past cases that moved this "
                                                         "passage up (empty: the plain ranking found it)")


class CasesOut(BaseModel):
    """Case memory's part in a search or answer (present when the neural_case_selector flag was on)."""

    selector_version: int | None = Field(None, description="the selector's version (0: none trained yet)")
    rule: bool | None = Field(None, description="true: the fixed near-duplicate rule decided (no model for the "
                                                "collection yet); null: no past question was close")
    case_ids: list[int] = Field(default_factory=list, description="the close past cases considered")
    changed: bool = Field(False, description="false: the ranking is exactly the one without cases")


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


class PlanPartOut(BaseModel):
    text: str = Field(description="the part as asked")
    query: str = Field(description="what the part searched: its text, plus the topic it refers back to")
    strategy: str | None = Field(description="the strategy that retrieved for the part (null: its search failed)")
    hits: list[int] = Field(description="chunk ids of the part's evidence in the merged context (empty: none found)")


class PlanOut(BaseModel):
    parts: list[PlanPartOut]
    planner: Literal["rule", "model"]
    kind: str = Field(description="single | enumeration | questions | clauses | comparison | list | model")
    elapsed_ms: float
    fell_back: str | None = Field(None, description="why a model's plan was refused for the rule planner's")


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
    plan: PlanOut | None = Field(None, description="with the meta_planner flag: the question's parts, each with "
                                                   "the strategy and evidence that answered it")
    rewritten_question: str | None = Field(None, description="a follow-up in a conversation: the standalone "
                                                             "question it was answered as (null: it stood alone)")
    conversation_id: str | None = Field(None, description="the conversation the turn was stored in")
    cases: CasesOut | None = Field(None, description="with the neural_case_selector flag: what case memory did")

    def llm_usage(self) -> dict[str, Any]:
        """What the request log records about the LLM behind this answer (nothing for no LLM)."""
        if self.provider == "none":
            return {}
        return {"llm_provider": self.provider, "llm_model": self.model,
                "llm_input_tokens": self.usage.input_tokens, "llm_output_tokens": self.usage.output_tokens,
                "llm_cost_usd": self.usage.cost_usd, "llm_ms": self.timings_ms.get("compose")}
