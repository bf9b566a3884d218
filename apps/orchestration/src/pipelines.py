"""One compiled answer graph per provider, built on first use and kept for the process."""

from __future__ import annotations

from typing import Any

from apps.core.config import Settings
from apps.llm.factory import ProviderFactory, ProviderUnavailableError
from apps.orchestration.src.answer_graph import AnswerPipeline, ToolStep
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
        self._tools: ToolStep | None = None

    def use_tools(self, step: ToolStep | None) -> None:
        """The tools node's work for every pipeline, built or to come (an entry point's: apps/doors)."""
        self._tools = step
        for pipeline in self._built.values():
            pipeline.tool_step = step

    def get(self, provider: str | None = None) -> AnswerPipeline:
        """Raises `ProviderUnavailableError` for a provider that is not configured or installed."""
        name = provider or self._settings.answer_provider
        if name not in self._built:
            self._built[name] = AnswerPipeline(self._bandit, self._providers.build(name), self._analyzer,
                                               self._settings, self._flags)
            self._built[name].tool_step = self._tools
        return self._built[name]

    async def provider_status(self, probe: bool = True) -> dict[str, Any] | None:
        """The configured provider's server as /health shows it (None for a provider with no server,
        the extractive one): state ok | degraded | unknown, its URLs, model, last latency and errors.
        `probe` asks the servers now (each replica's /models, a couple of seconds at most)."""
        try:
            provider = self.get().provider
        except ProviderUnavailableError as exc:
            return {"provider": self._settings.answer_provider, "state": "degraded", "last_error": str(exc)}
        if not hasattr(provider, "status"):
            return None
        return await provider.probe() if probe else provider.status()  # type: ignore[attr-defined]
