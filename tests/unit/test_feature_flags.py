"""Feature flags: the registry, both environment conventions, sticky rollouts, precedence, reserved
flags, the OpenFeature provider, and the runbook's check printing what the service serves."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from openfeature import api as openfeature_api
from openfeature.evaluation_context import EvaluationContext

from apps.api.env_manager import Environment, EnvironmentManager, EnvManager
from apps.core.config import load_settings
from apps.core.db import create_engine
from apps.core.flags import FLAGS, RESERVED_FLAGS, FlagConfigError
from apps.core.hashing import normalized_value
from apps.rollout.flags import FlagConfig, FlagContext, FlagService, configs_from_environment, evaluate
from apps.rollout.openfeature_provider import DtRagProvider

ROOT = Path(__file__).resolve().parents[2]
RUNBOOK_FLAGS = {"soft_q_bandit", "debate_mode", "experience_replay", "meta_planner", "neural_case_selector",
                 "mcp_tools", "tools_policy", "new_pipeline", "llm_validation", "agent_messaging"}


def test_golden_hash_vectors() -> None:
    """Documented in the README so other SDKs can check they bucket identically."""
    import mmh3

    assert mmh3.hash("hello", 0, signed=False) == 613153351  # the MurmurHash3 x86_32 reference value
    assert normalized_value("user-1", "new_pipeline") == 4719  # murmur3("new_pipeline:user-1") % 10000 + 1
    assert normalized_value("user-2", "new_pipeline") == 7029
    assert normalized_value("job-42", "soft_q_bandit") == 4022
    assert normalized_value("user-1", "new_pipeline", seed=86028157) == 914  # the variant layer's seed


def test_both_environment_conventions_and_fractions() -> None:
    configs = configs_from_environment({
        "FEATURE_SOFT_Q_BANDIT": "true", "USE_NEW_PIPELINE": "yes", "NEW_PIPELINE_ROLLOUT_PERCENTAGE": "0.1",
        "NEW_PIPELINE_USER_IDS": "user-id-1, user-id-2", "DEBATE_MODE_ROLLOUT_PERCENTAGE": "0.25",
        "USE_LLM_VALIDATION": "false", "LLM_VALIDATION_ROLLOUT_PERCENTAGE": "0.5",
    })
    assert configs["soft_q_bandit"].enabled and configs["soft_q_bandit"].rollout == 1.0
    pipeline = configs["new_pipeline"]
    assert pipeline.enabled and pipeline.rollout == 0.1 and pipeline.user_ids == {"user-id-1", "user-id-2"}
    assert pipeline.source == "environment" and configs["mcp_tools"].source == "default"
    assert configs["debate_mode"].enabled and configs["debate_mode"].rollout == 0.25  # a share alone enables
    assert not configs["llm_validation"].enabled  # an explicit false wins over a share


@pytest.mark.parametrize("value", ["10", "-0.1", "ten", "1.5"])
def test_invalid_rollout_values_are_refused(value: str) -> None:
    with pytest.raises(FlagConfigError, match="NEW_PIPELINE_ROLLOUT_PERCENTAGE"):
        configs_from_environment({"NEW_PIPELINE_ROLLOUT_PERCENTAGE": value})


def test_invalid_rollout_stops_startup_with_a_clear_message(tmp_path) -> None:
    env = {**os.environ, "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'x.db'}",
           "NEW_PIPELINE_ROLLOUT_PERCENTAGE": "10"}
    done = subprocess.run([sys.executable, "-m", "apps.cli.main", "flags", "list"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and "NEW_PIPELINE_ROLLOUT_PERCENTAGE='10'" in done.stderr
    assert "Traceback" not in done.stderr


def test_allowlist_kill_switch_and_rollout_precedence() -> None:
    base = FlagConfig("new_pipeline", enabled=True, rollout=0.0, user_ids=frozenset({"vip"}))
    assert evaluate(base, FlagContext(user_id="vip")).reason == "allowlist"
    assert not evaluate(base, FlagContext(user_id="someone")).enabled
    killed = FlagConfig("new_pipeline", enabled=True, rollout=1.0, user_ids=frozenset({"vip"}), kill=True)
    assert evaluate(killed, FlagContext(user_id="vip")) == evaluate(killed, FlagContext(user_id="x"))
    assert not evaluate(killed, FlagContext(user_id="vip")).enabled
    disabled = FlagConfig("new_pipeline", enabled=False, rollout=1.0, user_ids=frozenset({"vip"}))
    assert evaluate(disabled, FlagContext(user_id="vip")).enabled  # allowlist phase before enabling
    assert not evaluate(disabled, FlagContext(user_id="x")).enabled
    half = FlagConfig("new_pipeline", enabled=True, rollout=0.5)
    assert not evaluate(half, FlagContext()).enabled  # nothing to be sticky on


def test_rollout_is_sticky_accurate_and_only_grows() -> None:
    users = [FlagContext(user_id=f"u{i}") for i in range(20_000)]
    on = {}
    for share in (0.05, 0.1, 0.5):
        config = FlagConfig("new_pipeline", enabled=True, rollout=share)
        on[share] = {u.user_id for u in users if evaluate(config, u).enabled}
        assert abs(len(on[share]) / len(users) - share) < 0.01
    assert on[0.05] <= on[0.1] <= on[0.5]
    job = FlagConfig("new_pipeline", enabled=True, rollout=0.5)
    assert evaluate(job, FlagContext(job_id="j1")).bucket == normalized_value("j1", "new_pipeline")


def test_openfeature_provider_exposes_the_same_flags() -> None:
    class Static(FlagService):
        def __init__(self) -> None:  # no database: configs from a fixed environment
            self._state = type("S", (), {"configs": configs_from_environment(
                {"USE_NEW_PIPELINE": "true", "NEW_PIPELINE_USER_IDS": "vip", "NEW_PIPELINE_ROLLOUT_PERCENTAGE": "0"})})()

    openfeature_api.set_provider(DtRagProvider(Static()))
    client = openfeature_api.get_client()
    assert client.get_boolean_value("new_pipeline", False, EvaluationContext("vip")) is True
    details = client.get_boolean_details("new_pipeline", True, EvaluationContext("other"))
    assert details.value is False and details.reason == "SPLIT"
    assert client.get_boolean_details("no_such_flag", True).error_code == "FLAG_NOT_FOUND"
    assert client.get_string_value("new_pipeline", "x") == "x"


def test_flags_default_off_and_parse_both_conventions(caplog) -> None:
    assert RUNBOOK_FLAGS <= set(FLAGS)
    assert {n: c.enabled for n, c in configs_from_environment({}).items()} == {name: False for name in FLAGS}
    configs = configs_from_environment({"FEATURE_SOFT_Q_BANDIT": "true", "USE_NEW_PIPELINE": "on",
                                        "FEATURE_DEBATE_MODE": "0", "USE_DEBATE_MODE": "yes",
                                        "FEATURE_MCP_TOOLS": "maybe"})
    assert configs["soft_q_bandit"].enabled and configs["new_pipeline"].enabled
    assert configs["debate_mode"].enabled is False  # FEATURE_ wins over USE_
    with caplog.at_level(logging.WARNING):
        assert configs_from_environment({"FEATURE_MCP_TOOLS": "maybe"})["mcp_tools"].enabled is False
    assert "FEATURE_MCP_TOOLS='maybe'" in caplog.text


def test_reserved_flags_never_make_a_request_new() -> None:
    # The doors' flags (mcp_tools, tools_policy, agent_messaging) have behaviour since SPEC-DOORS-001.
    assert set(RESERVED_FLAGS) <= {"meta_planner", "neural_case_selector"}
    environ = {f"FEATURE_{name.upper()}": "true" for name in RESERVED_FLAGS}
    service = FlagService(create_engine(load_settings()), environ=environ)
    assignment = service.assign(FlagContext(request_id="r1"))
    assert assignment.variant == "legacy" and not assignment.flags["new_pipeline"]
    assert all(assignment.flags[name] for name in RESERVED_FLAGS)  # on, but they change nothing yet
    environ["FEATURE_EVIDENCE_TRACKING"] = "true"
    assert FlagService(create_engine(load_settings()), environ=environ).assign(FlagContext()).variant == "new"


def test_platform_switches_do_not_make_a_request_new() -> None:
    """Where jobs run (`durable_worker`) is not a feature of a request: turning it on must not move
    traffic to the `new` variant and skew the canary."""
    service = FlagService(create_engine(load_settings()), environ={"USE_DURABLE_WORKER": "true"})
    assert service.config("durable_worker").enabled
    assignment = service.assign(FlagContext(request_id="r1"))
    assert assignment.variant == "legacy" and "durable_worker" not in assignment.flags


def test_env_manager_api(monkeypatch, database_url: str) -> None:
    monkeypatch.setenv("FEATURE_EVIDENCE_TRACKING", "1")
    manager = EnvManager(load_settings(database_url=database_url, db_pool_size=3, db_max_overflow=4))
    assert manager.current_env is Environment.DEVELOPMENT is Environment.development
    assert {e.value for e in (Environment.PRODUCTION, Environment.STAGING, Environment.TESTING)} == {
        "production", "staging", "testing"}
    flags = manager.get_feature_flags()
    assert flags["evidence_tracking"] is True and flags["soft_q_bandit"] is False
    assert flags["enable_debug_endpoints"] is True and flags["enable_redis"] is False
    config = manager.get_database_config()
    assert (config["pool_size"], config["max_overflow"]) == (3, 4)
    assert EnvironmentManager is EnvManager
    assert manager.validate_environment()["valid"]
    summary = manager.get_environment_summary()
    assert summary["environment"] == "development" and summary["feature_flags"] == flags
    secret = EnvManager(load_settings(database_url="postgresql+asyncpg://dt:hunter2@db:5432/dt"))
    assert "hunter2" not in str(secret.get_database_config()) and "***" in secret.get_database_config()["url"]
    staging = EnvManager(load_settings(environment="staging", database_url=database_url,
                                       secret_key="dev-insecure-secret-change-me", answer_provider="gemini"))
    report = staging.validate_environment()
    assert report["warnings"] == ["SECRET_KEY is the development default"]
    assert report["errors"] == ["ANSWER_PROVIDER=gemini needs GEMINI_API_KEY"] and not report["valid"]


def test_runbook_check_prints_what_the_service_serves(tmp_path) -> None:
    """`.env` files and audited database overrides (kill switches included) reach the runbook check."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'flags.db'}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FEATURE_", "USE_"))}
    env["DATABASE_URL"] = url
    check = ("from apps.api.env_manager import get_env_manager; "
             "print(get_env_manager().get_feature_flags()['experience_replay'])")

    def run(code: str) -> str:
        done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    assert run(check) == "False"  # no database yet: defaults
    (tmp_path / ".env").write_text("FEATURE_EXPERIENCE_REPLAY=true\n")
    assert run(check) == "True"
    run("from apps.core.migrations import upgrade; import os; upgrade(os.environ['DATABASE_URL'])")
    run("import asyncio\n"
        "from apps.core.config import get_settings\n"
        "from apps.core.db import create_engine\n"
        "from apps.rollout.flags import FlagService\n"
        "async def main():\n"
        "    engine = create_engine(get_settings())\n"
        "    await FlagService(engine).set('experience_replay', actor='test', reason='incident', kill=True)\n"
        "    await engine.dispose()\n"
        "asyncio.run(main())")
    assert run(check) == "False"  # the kill switch the service obeys
