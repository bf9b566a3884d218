"""The operators' one-line scripts and the learning CLI, run as the runbooks write them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_python(code: str, env: dict[str, str] | None = None) -> str:
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={**os.environ, **(env or {})},
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_operator_snippets_and_cli(tmp_path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'ops.db'}"
    env = {"DATABASE_URL": url, "COLUMNS": "200"}
    run_python("from apps.core.migrations import upgrade; import os; upgrade(os.environ['DATABASE_URL'])", env)
    run_python("""
import asyncio
from apps.orchestration.src.bandit.q_learning import get_q_learning
from apps.orchestration.src.bandit.replay_buffer import ReplayBuffer
q = get_q_learning()
for state, arm, r in [("en|short|what|idf-high|lead-sharp", "bm25", 0.9), ("ko|long|other|idf-low|lead-flat", "hybrid_cc", 0.6)]:
    q.update_q_value(state, arm, r)
asyncio.run(ReplayBuffer().add("en|short|what|idf-high|lead-sharp", "bm25", 0.9, request_id="r1"))
""", env)
    out = run_python("from apps.orchestration.src.bandit.q_learning import get_q_learning; q=get_q_learning(); "
                     "print(len(q.q_table)); [print(s, max(v)) for s, v in list(q.q_table.items())[:5]]", env)
    assert out.splitlines() == ["2", "en|short|what|idf-high|lead-sharp 0.9", "ko|long|other|idf-low|lead-flat 0.6"]
    assert run_python("from apps.orchestration.src.langgraph_pipeline import get_pipeline; "
                      "print(len(get_pipeline().replay_buffer))", env) == "1"

    def dtrag(*args: str) -> str:
        done = subprocess.run([sys.executable, "-m", "apps.cli.main", *args], cwd=ROOT, capture_output=True,
                              text=True, timeout=300, env={**os.environ, **env})
        assert done.returncode == 0, done.stderr
        return done.stdout

    stats = json.loads(dtrag("qtable", "stats"))
    assert stats["states"] == 2 and stats["updates"] == 2
    assert "en|short|what|idf-high|lead-sharp" in dtrag("qtable", "show", "--state", "en|short|what|idf-high|lead-sharp")
    assert "ko|long|other" in dtrag("qtable", "top", "-n", "5")
    exported = json.loads(dtrag("qtable", "export", "--format", "json"))
    assert exported[0]["q"]["bm25"] == 0.9
    csv_lines = dtrag("qtable", "export", "--format", "csv").splitlines()
    assert csv_lines[0] == "state,action,q,updates,probability,greedy" and len(csv_lines) == 1 + 2 * 4
    assert json.loads(dtrag("replay", "stats"))["size"] == 1
    learned = json.loads(dtrag("bandit", "learn", "--batches", "2"))
    assert learned["applied"] == 2 and learned["policy_version"] == 2
    assert json.loads(dtrag("bandit", "ope", "--json"))["n"] == 0  # nothing logged yet: says so
