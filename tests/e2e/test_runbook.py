"""docs/runbook.md as written: every ```bash block that does not call docker runs, in order, against a
real two-worker server on PostgreSQL, with the runbook's variables set; the flags end where it says."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.support.postgres import PostgresHarness
from tests.support.server import ROOT, run_cli, running_server

RUNBOOK = ROOT / "docs" / "runbook.md"


def bash_blocks(text: str) -> list[str]:
    return re.findall(r"^```bash\n(.*?)^```$", text, re.MULTILINE | re.DOTALL)


def _commands(block: str) -> list[str]:
    return [c for c in block.replace("\\\n", " ").splitlines() if c.strip()]


def _is_docker(block: str) -> bool:
    return any("docker " in c for c in _commands(block))


def test_docker_blocks_hold_only_docker_commands() -> None:
    """So skipping a Docker block never skips a command the server test should have run."""
    blocks = bash_blocks(RUNBOOK.read_text())
    docker = [b for b in blocks if _is_docker(b)]
    assert docker and len(docker) < len(blocks)
    for block in docker:
        for command in _commands(block):
            assert re.match(r"^(\w+=\S+ )?docker compose -f docker-compose\.staging\.yml ", command), command


@pytest.fixture
def pg_database(postgres: PostgresHarness, pg_template: str):
    name = postgres.create_database(template=pg_template)
    yield postgres.url(name)
    postgres.drop_database(name)


def test_every_non_docker_command_runs_against_a_real_server(pg_database: str, tmp_path: Path) -> None:
    blocks = [b for b in bash_blocks(RUNBOOK.read_text()) if not _is_docker(b)]
    with running_server(pg_database, tmp_path) as (base, env):
        admin = json.loads(run_cli(["keys", "create", "--scope", "admin", "--json"], env).stdout)["api_key"]
        read = json.loads(run_cli(["keys", "create", "--scope", "read", "--json"], env).stdout)["api_key"]
        import pgserver

        pg_bin = Path(pgserver.__file__).parent / "pginstall" / "bin"  # pg_dump of the server's own version
        shell_env = {**env, "DTRAG_URL": base, "ADMIN_KEY": admin, "READ_KEY": read,
                     "PG_URL": pg_database.replace("postgresql+asyncpg://", "postgresql://"),
                     "ALEMBIC_CONFIG": str(ROOT / "alembic.ini"),
                     "PATH": os.pathsep.join([str(pg_bin), str(Path(sys.executable).parent), env["PATH"]])}
        for block in blocks:
            done = subprocess.run(["bash", "-euo", "pipefail", "-c", block], cwd=tmp_path, env=shell_env,
                                  capture_output=True, text=True, timeout=300, check=False)
            assert done.returncode == 0, f"{block}\n--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}"
        assert (tmp_path / "dtrag-before-upgrade.dump").stat().st_size > 0
        deadline = time.monotonic() + 5  # every worker applies the last change within 2 s
        while True:
            flag = httpx.get(f"{base}/feature-flags", timeout=30).json()["flags"]["new_pipeline"]
            if (flag["enabled"], flag["kill"]) == (False, False) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert (flag["enabled"], flag["kill"]) == (False, False)
        history = httpx.get(f"{base}/api/v1/admin/feature-flags/new_pipeline/history",
                            headers={"X-API-Key": admin}, params={"limit": 100}, timeout=30).json()
    reasons = [entry["reason"] for entry in history]
    wanted = re.findall(r'--reason "([^"]+)"|"reason": "([^"]+)"', "\n".join(blocks))
    assert sorted(reasons) == sorted(a or b for a, b in wanted)
