"""The query planner: the rules plan every question (microseconds); with a model answer provider
(gemini, openai) the model plans the questions that show a compound cue, and its plan is used when it
is valid. A question that asks one thing passes through as one part, at no model cost."""

from __future__ import annotations

import logging
import time

from apps.core import metrics
from apps.core.config import Settings
from apps.llm.base import AnswerProvider, Usage
from apps.orchestration.src.debate.types import CompletionProvider
from apps.orchestration.src.planner.model import ModelPlanner, PlanRefused
from apps.orchestration.src.planner.plan import Plan, PlanPart, Planner
from apps.text.analyzer import Analyzer
from apps.text.compound import Part, has_cue, split_question
from apps.text.language import detect_language

log = logging.getLogger(__name__)

# Providers whose model may plan under PLANNER_MODEL=auto: an instruction-following model behind an API.
# The local GGUF base model continues text; it does not follow a JSON instruction.
MODEL_PLANNERS = ("gemini", "openai")


class QueryPlanner:
    def __init__(self, analyzer: Analyzer, max_parts: int, model: ModelPlanner | None = None) -> None:
        self.analyzer = analyzer
        self.max_parts = max_parts
        self.model = model

    @classmethod
    def for_provider(cls, provider: AnswerProvider | None, analyzer: Analyzer, settings: Settings) -> QueryPlanner:
        model = None
        if (settings.planner_model == "auto" and provider is not None and provider.name in MODEL_PLANNERS
                and isinstance(provider, CompletionProvider)):
            model = ModelPlanner(provider, analyzer, settings.planner_max_parts, settings.planner_model_max_tokens)
        return cls(analyzer, settings.planner_max_parts, model)

    @property
    def name(self) -> str:
        return "model" if self.model is not None else "rule"

    async def plan(self, question: str) -> Plan:
        """The rules' plan, or the model's when it plans this question and its reply is valid."""
        start = time.perf_counter()
        split = split_question(question)
        if self.model is None or not has_cue(question):
            return self._finish(question, list(split.parts), split.kind, "rule", start)
        usage = Usage()
        try:
            parts = await self.model.plan(question, detect_language(question), usage)
        except PlanRefused as exc:
            metrics.PLANNER_FALLBACKS.labels(reason=exc.reason).inc()
            log.warning("model plan refused; the rule plan stands", extra={"reason": str(exc)})
            return self._finish(question, list(split.parts), split.kind, "rule", start, str(exc), usage)
        return self._finish(question, parts, "model", "model", start, None, usage)

    def rule_plan(self, question: str, fell_back: str | None = None) -> Plan:
        """The rules' plan alone (microseconds): what stands when a model's plan is refused or late."""
        split = split_question(question)
        return self._finish(question, list(split.parts), split.kind, "rule", time.perf_counter(), fell_back)

    def _finish(self, question: str, parts: list[Part], kind: str, planner: Planner, start: float,
                fell_back: str | None = None, usage: Usage | None = None) -> Plan:
        if len(parts) > self.max_parts:  # too many to give each a share of the context: searched whole
            parts, kind = [Part(question.strip(), question.strip())], "single"
        metrics.PLANS.labels(parts=str(len(parts)), planner=planner).inc()
        return Plan(question=question, parts=tuple(PlanPart(p.text, p.query) for p in parts), planner=planner,
                    kind=kind, elapsed_ms=round((time.perf_counter() - start) * 1000, 3), fell_back=fell_back,
                    usage=usage or Usage())
