"""What a conversation remembers of a turn for the next question, and what rewriting a follow-up gives."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from apps.llm.base import Usage
from apps.text.followups import Cue

Rewriter = Literal["rule", "model"]


@dataclass(frozen=True)
class HistoryTurn:
    question: str  # as asked
    standalone: str  # what was searched: the rewritten question, or the question when it stood alone
    subject: str | None  # what the turn was about (carried in, or named by it): what a follow-up refers to
    answer: str = ""
    titles: tuple[str, ...] = ()  # its sources' titles, best first


@dataclass(frozen=True)
class FollowupRewrite:
    question: str  # the standalone question to answer: the input when it stood alone
    rewritten: bool
    subject: str | None  # the earlier subject carried in (None when unchanged)
    cue: Cue | None  # what made it a follow-up
    by: Rewriter | None  # who rewrote it (None: unchanged)
    elapsed_ms: float
    fell_back: str | None = None  # why a model's rewrite was refused for the rule's
    usage: Usage = field(default_factory=Usage)
