"""Settings, env files, feature flags from the environment, and the runbook's env_manager API."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from apps.api.env_manager import EnvManager
from apps.core.config import Settings, SettingsError, load_settings
from apps.core.flags import FLAGS, env_flags

ROOT = Path(__file__).resolve().parents[1]
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


def test_flags_default_off_and_parse_both_conventions(caplog) -> None:
    assert RUNBOOK_FLAGS <= set(FLAGS)
    assert env_flags({}) == {name: False for name in FLAGS}
    flags = env_flags({"FEATURE_SOFT_Q_BANDIT": "true", "USE_NEW_PIPELINE": "on", "FEATURE_DEBATE_MODE": "0",
                       "USE_DEBATE_MODE": "yes", "FEATURE_MCP_TOOLS": "maybe"})
    assert flags["soft_q_bandit"] and flags["new_pipeline"]
    assert flags["debate_mode"] is False  # FEATURE_ wins over USE_
    with caplog.at_level(logging.WARNING):
        assert env_flags({"FEATURE_MCP_TOOLS": "maybe"})["mcp_tools"] is False
    assert "FEATURE_MCP_TOOLS='maybe'" in caplog.text


def test_env_manager_api(monkeypatch) -> None:
    monkeypatch.setenv("FEATURE_EVIDENCE_TRACKING", "1")
    manager = EnvManager(load_settings(db_pool_size=3, db_max_overflow=4))
    assert manager.current_env.value == "development"
    assert manager.get_feature_flags()["evidence_tracking"] is True
    config = manager.get_database_config()
    assert (config["pool_size"], config["max_overflow"]) == (3, 4)


def test_runbook_command_prints_false() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FEATURE_", "USE_"))}
    out = subprocess.run(
        [sys.executable, "-c", "from apps.api.env_manager import get_env_manager; "
         "print(get_env_manager().get_feature_flags()['soft_q_bandit'])"],
        cwd=ROOT, env=env, capture_output=True, text=True, check=True,
    )
    assert out.stdout.strip() == "False"
