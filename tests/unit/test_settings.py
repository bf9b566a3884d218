"""Settings, env files, feature flags from the environment, and the runbook's env_manager API."""

from __future__ import annotations

from pathlib import Path

import pytest

from apps.core.config import Settings, SettingsError, load_settings

ROOT = Path(__file__).resolve().parents[2]
RUNBOOK_FLAGS = {
    "soft_q_bandit", "debate_mode", "experience_replay", "meta_planner", "neural_case_selector", "mcp_tools",
    "tools_policy", "new_pipeline", "llm_validation", "agent_messaging", "hallucination_detection", "evidence_tracking",
}


def test_defaults() -> None:
    s = Settings()
    assert s.database_url == "sqlite+aiosqlite:///./dt_rag.db" and s.backend == "sqlite"
    assert s.environment.value == "development"


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        ({"ENVIRONMENT": "prod"}, "ENVIRONMENT"),
        ({"DB_POOL_SIZE": "zero"}, "DB_POOL_SIZE"),
        ({"DATABASE_URL": "mysql://x"}, "DATABASE_URL"),
        ({"LOG_LEVEL": "LOUD"}, "LOG_LEVEL"),
        ({"BM25_K1": "1.5"}, "fixed at 1.2/0.75 by SQLite FTS5"),
        ({"CHUNK_TOKENS": "100", "CHUNK_OVERLAP_TOKENS": "100"}, "CHUNK_OVERLAP_TOKENS"),
        ({"ENVIRONMENT": "production"}, "SECRET_KEY must be set"),
    ],
)
def test_invalid_values_fail_clearly(monkeypatch, env: dict[str, str], fragment: str) -> None:
    monkeypatch.delenv("SECRET_KEY", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(SettingsError, match="invalid configuration") as info:
        load_settings()
    assert fragment in str(info.value)


def test_postgres_url_is_normalised_and_k1_allowed() -> None:
    s = load_settings(database_url="postgresql://u:p@h/db", bm25_k1=1.5)
    assert s.database_url == "postgresql+asyncpg://u:p@h/db" and s.backend == "postgresql"


def test_env_files_layer_by_environment(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("DB_POOL_SIZE=7\nLOG_LEVEL=debug\n")
    (tmp_path / ".env.staging").write_text("DB_POOL_SIZE=9\n")
    monkeypatch.setenv("ENVIRONMENT", "staging")
    s = load_settings()
    assert (s.db_pool_size, s.log_level, s.environment.value) == (9, "DEBUG", "staging")
    monkeypatch.setenv("DB_POOL_SIZE", "11")  # the process environment wins over files
    assert load_settings().db_pool_size == 11


