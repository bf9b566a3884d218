"""Runbook-facing shim: `get_env_manager()` over the settings and flags that live in `apps.core`."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from apps.core.config import Environment, Settings, get_settings
from apps.core.flags import env_flags


class EnvManager:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    @property
    def current_env(self) -> Environment:
        return self._settings.environment

    def get_feature_flags(self) -> dict[str, bool]:
        return env_flags()

    def get_database_config(self) -> dict[str, Any]:
        return {
            "url": self._settings.database_url.split("@")[-1] if "@" in self._settings.database_url
            else self._settings.database_url,
            "backend": self._settings.backend,
            "pool_size": self._settings.db_pool_size,
            "max_overflow": self._settings.db_max_overflow,
        }


@lru_cache(maxsize=1)
def get_env_manager() -> EnvManager:
    return EnvManager(get_settings())
