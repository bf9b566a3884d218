"""The runbooks' environment manager, the original project's API over our settings and flag service.

    from apps.api.env_manager import get_env_manager
    manager = get_env_manager()
    manager.current_env                      # Environment.DEVELOPMENT ...
    manager.get_feature_flags()["experience_replay"]

`get_feature_flags()` answers what the service serves: the flag service's view (defaults < environment
and `.env` files < audited database overrides, kill switches included), evaluated for a request with no
user; the original's `enable_*` keys are derived from the settings that really decide them.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from apps.core.config import Environment, Settings
from apps.core.db import run_blocking
from apps.core.flags import FLAGS, RESERVED_FLAGS
from apps.core.redaction import redact_url
from apps.rollout.flags import FlagContext, FlagService
from apps.runtime import get_runtime

__all__ = ["Environment", "EnvironmentManager", "EnvManager", "get_env_manager"]


class EnvManager:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    @property
    def current_env(self) -> Environment:
        return self._settings.environment

    @property
    def is_production(self) -> bool:
        return self._settings.environment is Environment.production

    def served_flags(self) -> dict[str, bool]:
        """Every flag as the service evaluates it for a request with no user (reads the database)."""

        async def read(engine: AsyncEngine) -> dict[str, bool]:
            service = FlagService(engine, self._settings.flag_refresh_s)
            try:
                await service.refresh(force=True)
            except DBAPIError:  # no database yet (before `dtrag db upgrade`): no overrides can exist either
                pass
            return {name: service.evaluate(name, FlagContext()).enabled for name in FLAGS}

        return run_blocking(self._settings.database_url, read)

    def get_feature_flags(self) -> dict[str, Any]:
        s = self._settings
        flags: dict[str, Any] = self.served_flags()
        flags.update({
            "enable_debug_endpoints": not self.is_production,  # GET /debug
            "enable_docs": True,  # /docs and the OpenAPI schema
            "enable_metrics": True,  # GET /metrics (Prometheus)
            "enable_metrics_auth": s.metrics_require_key,
            "enable_rate_limiting": True,  # per API key, always on
            "enable_redis": bool(s.redis_url),
            "enable_search_cache": s.search_cache_ttl_s > 0,
            "enable_llm": s.answer_provider != "extractive",
        })
        return flags

    def reserved_flags(self) -> tuple[str, ...]:
        """Flags that exist for the runbooks but have no behaviour yet: turning them on changes nothing."""
        return RESERVED_FLAGS

    def get_database_config(self) -> dict[str, Any]:
        s = self._settings
        return {"url": redact_url(s.database_url), "backend": s.backend, "pool_size": s.db_pool_size,
                "max_overflow": s.db_max_overflow}

    def get_security_config(self) -> dict[str, Any]:
        s = self._settings
        return {
            "api_key_header": "X-API-Key",
            "secret_key_set": not s.secret_key.startswith("dev-insecure"),
            "rate_limit_per_minute": s.rate_limit_per_minute,
            "max_request_bytes": s.max_request_bytes,
            "metrics_require_key": s.metrics_require_key,
            "debug_endpoint": not self.is_production,
        }

    def validate_environment(self) -> dict[str, Any]:
        """What would make this environment unsafe or broken: errors block production, warnings advise."""
        s = self._settings
        errors: list[str] = []
        warnings: list[str] = []
        if s.secret_key.startswith("dev-insecure"):  # Settings refuses it in production: only ever a warning
            warnings.append("SECRET_KEY is the development default")
        if self.is_production and s.is_sqlite:
            warnings.append("production on the embedded SQLite file: one host only; use PostgreSQL to scale out")
        if self.is_production and not s.metrics_require_key:
            warnings.append("METRICS_REQUIRE_KEY is off: the JSON metrics views are unauthenticated")
        if s.answer_provider == "gemini" and not s.gemini_api_key:
            errors.append("ANSWER_PROVIDER=gemini needs GEMINI_API_KEY")
        return {"valid": not errors, "environment": s.environment.value, "errors": errors, "warnings": warnings}

    def get_environment_summary(self) -> dict[str, Any]:
        return {
            "environment": self._settings.environment.value,
            "database": self.get_database_config(),
            "security": self.get_security_config(),
            "feature_flags": self.get_feature_flags(),
            "validation": self.validate_environment(),
        }


EnvironmentManager = EnvManager  # the original project's name


@lru_cache(maxsize=1)
def get_env_manager() -> EnvManager:
    return EnvManager(get_runtime().settings)
