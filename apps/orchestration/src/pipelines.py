"""One compiled answer graph per provider, built on first use and kept for the process."""

from __future__ import annotations

from apps.core.config import Settings
from apps.llm.factory import ProviderFactory
from apps.orchestration.src.answer_graph import AnswerPipeline
from apps.orchestration.src.bandit.service import StrategyBandit
from apps.rollout.flags import FlagService
from apps.text.analyzer import Analyzer


class AnswerPipelines:
    def __init__(self, bandit: StrategyBandit, providers: ProviderFactory, analyzer: Analyzer, settings: Settings,
                 flags: FlagService) -> None:
        self._bandit = bandit
        self._providers = providers
        self._analyzer = analyzer
        self._settings = settings
        self._flags = flags
        self._built: dict[str, AnswerPipeline] = {}

    def get(self, provider: str | None = None) -> AnswerPipeline:
        """Raises `ProviderUnavailableError` for a provider that is not configured or installed."""
        name = provider or self._settings.answer_provider
        if name not in self._built:
            self._built[name] = AnswerPipeline(self._bandit, self._providers.build(name), self._analyzer,
                                               self._settings, self._flags)
        return self._built[name]
