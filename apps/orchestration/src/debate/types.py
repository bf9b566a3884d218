"""What a debate records: claims with their sources, each agent's turn, and the result a caller gets."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from apps.llm.base import Generation, Usage
from apps.orchestration.src.grounding import Citation

Role = Literal["affirmative", "critical"]
StopReason = Literal["consensus", "max_rounds", "timeout", "budget", "error"]
Judge = Literal["llm", "vote"]


@runtime_checkable
class CompletionProvider(Protocol):
    """A model that continues a prompt: Gemini and the local GGUF model both offer this."""

    name: str
    model: str

    async def complete(self, prompt: str, max_tokens: int) -> Generation: ...


@dataclass(frozen=True)
class Claim:
    text: str
    chunk_ids: tuple[int, ...]
    support: float  # best grounding.support of the text among the cited chunks
    verified: bool  # cites a chunk and that chunk supports it; unverified claims are struck

    def to_dict(self) -> dict[str, Any]:
        return {"text": self.text, "chunk_ids": list(self.chunk_ids), "support": self.support,
                "verified": self.verified}


@dataclass
class Turn:
    agent: int
    role: Role
    round: int
    view: tuple[int, ...]  # chunk ids of the evidence this agent was given
    answer: str = ""
    claims: list[Claim] = field(default_factory=list)
    rebutted: list[Claim] = field(default_factory=list)  # others' claims this agent's evidence contradicts
    abstained: bool = False  # "my sources do not say": neither a vote nor an objection
    error: str | None = None  # "timeout", "budget" or the provider's error; the turn then has no claims
    usage: Usage = field(default_factory=Usage)
    elapsed_ms: float = 0.0

    @property
    def verified(self) -> list[Claim]:
        return [c for c in self.claims if c.verified]

    @property
    def struck(self) -> list[Claim]:
        return [c for c in self.claims if not c.verified]

    @property
    def answering(self) -> bool:
        return self.error is None and not self.abstained and bool(self.verified)

    def to_dict(self) -> dict[str, Any]:
        return {
            "agent": self.agent, "role": self.role, "round": self.round, "view": list(self.view),
            "answer": self.answer,
            "cited_chunk_ids": sorted({i for c in self.claims for i in c.chunk_ids}),
            "verified": [c.to_dict() for c in self.verified], "struck": [c.to_dict() for c in self.struck],
            "rebutted": [c.to_dict() for c in self.rebutted], "abstained": self.abstained, "error": self.error,
            "usage": asdict(self.usage), "elapsed_ms": round(self.elapsed_ms, 2),
        }


@dataclass
class DebateResult:
    final_answer: str
    rounds: int
    llm_calls: int  # calls to a model, counted as they are made (cancelled ones included)
    affirmative_answers: list[str]
    critical_answers: list[str]
    elapsed_time: float  # seconds
    transcript: list[list[Turn]] = field(default_factory=list)  # per completed round, per agent
    stop_reason: StopReason = "consensus"
    usage: Usage = field(default_factory=Usage)
    citations: list[Citation] = field(default_factory=list)
    fell_back: bool = False  # stopped by timeout, budget or error: the answer is a vote of what was at hand
    agreement: float = 1.0  # the last round's lowest pairwise agreement among answering agents
    conflict: bool = False  # the answer reports that verified sources disagree, each side with its citation
    judge: Judge | None = None  # who settled a disagreement left after the last round
    calls: int = 0  # all composer calls, the extractive composer's included (they cost no tokens)
    language: str = "en"
    errors: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "final_answer": self.final_answer, "rounds": self.rounds, "llm_calls": self.llm_calls,
            "calls": self.calls, "stop_reason": self.stop_reason, "agreement": self.agreement,
            "conflict": self.conflict, "judge": self.judge, "fell_back": self.fell_back,
            "elapsed_ms": round(self.elapsed_time * 1000, 2), "usage": asdict(self.usage),
            "citations": [asdict(c) for c in self.citations], "language": self.language, "errors": self.errors,
            "agents": [[t.to_dict() for t in turns] for turns in self.transcript],
        }
