"""Schemathesis against the OpenAPI schema of a real server: a bounded number of examples, no 5xx."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from tests.support.server import run_cli as run
from tests.support.server import running_server


def test_no_server_errors(tmp_path) -> None:
    with running_server(f"sqlite+aiosqlite:///{tmp_path / 'st.db'}", tmp_path, workers=1) as (base, env):
        check(base, env)


def check(base: str, env: dict) -> None:
    key = json.loads(run(["keys", "create", "--scope", "admin", "--json"], env).stdout)["api_key"]
    st = shutil.which("st", path=str(Path(sys.executable).parent)) or "st"
    result = subprocess.run(
        [st, "run", f"{base}/api/v1/openapi.json", "--checks", "not_a_server_error", "--max-examples", "15",
         "--seed", "7", "--header", f"X-API-Key: {key}", "--request-timeout", "30",
         "--phases", "examples,coverage,fuzzing", "--generation-deterministic"],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
