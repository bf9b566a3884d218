"""Multi-agent debate over retrieved evidence (SPEC-DEBATE-001): agents on different shares of the
evidence, claims checked against their sources, stop on agreement, a judge only for what is left."""

from apps.orchestration.src.debate.agent_prompts import CONFLICT_HEADER
from apps.orchestration.src.debate.agents import DebateAgent
from apps.orchestration.src.debate.debate_engine import DebateEngine
from apps.orchestration.src.debate.trigger import should_debate
from apps.orchestration.src.debate.types import Claim, CompletionProvider, DebateResult, StopReason, Turn

__all__ = ["CONFLICT_HEADER", "Claim", "CompletionProvider", "DebateAgent", "DebateEngine", "DebateResult",
           "StopReason", "Turn", "should_debate"]
