"""One compiled answer pipeline per provider, built on first use and kept for the process."""

from __future__ import annotations

from apps.core.config import Settings
from apps.llm.factory import build_provider
from apps.orchestration.src.bandit.service import StrategyBandit
from apps.orchestration.src.langgraph_pipeline import AnswerPipeline
from apps.search.text.analyzer import get_analyzer


class Pipelines:
    def __init__(self, bandit: StrategyBandit, settings: Settings) -> None:
        self._bandit = bandit
        self._settings = settings
        self._built: dict[str, AnswerPipeline] = {}

    def get(self, provider: str | None = None) -> AnswerPipeline:
        name = provider or self._settings.answer_provider
        if name not in self._built:
            self._built[name] = AnswerPipeline(self._bandit, build_provider(self._settings, name), get_analyzer(),
                                               self._settings)
        return self._built[name]
