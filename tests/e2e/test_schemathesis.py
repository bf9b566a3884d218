"""Schemathesis against the OpenAPI schema of a real server, on both backends, within a time budget:
no 5xx, and no error body that quotes SQL, exception text or connection URLs (tests/e2e/schemathesis_hooks.py).

The phases are split between the backends to keep the pass short: SQLite gets the coverage phase
(boundary and invalid values of every parameter), PostgreSQL the stateful one (sequences of calls
along the links Schemathesis finds between operations, e.g. a key created, then revoked); both fuzz."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
from pathlib import Path

from apps.core.api_keys import ApiKeyStore, Scope
from apps.core.config import load_settings
from apps.core.db import create_engine
from tests.support.server import running_server

HOOKS = Path(__file__).with_name("schemathesis_hooks.py")
PHASES = {"sqlite": "coverage,fuzzing", "postgresql": "fuzzing,stateful"}
BUDGET_S = 12  # per backend; starting the server adds about as much again


async def _admin_key(env: dict[str, str]) -> str:
    settings = load_settings(database_url=env["DATABASE_URL"], secret_key=env["SECRET_KEY"])
    engine = create_engine(settings)
    try:
        return (await ApiKeyStore(engine, settings.secret_key).create(Scope.admin, name="schemathesis"))[1]
    finally:
        await engine.dispose()


def test_no_server_errors_and_no_internals(database_url: str, tmp_path) -> None:
    backend = "postgresql" if database_url.startswith("postgresql") else "sqlite"
    # A fuzzer is a client far over any sane rate limit: 429s would hide the routes behind them.
    with running_server(database_url, tmp_path, workers=1, RATE_LIMIT_PER_MINUTE="1000000") as (base, env):
        key = asyncio.run(_admin_key(env))
        st = shutil.which("st", path=str(Path(sys.executable).parent)) or "st"
        result = subprocess.run(
            [st, "run", f"{base}/api/v1/openapi.json", "--checks", "not_a_server_error,no_internals_in_errors",
             "--max-examples", "10", "--max-time", str(BUDGET_S), "--header", f"X-API-Key: {key}",
             "--request-timeout", "30", "--phases", PHASES[backend], "--generation-deterministic", "--no-color"],
            capture_output=True, text=True, timeout=300, env={**os.environ, "SCHEMATHESIS_HOOKS": str(HOOKS)},
        )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert " passed" in result.stdout, result.stdout[-2000:]
