"""Soft Q-learning: policy arithmetic, state keys, the shared persistent Q-table, OPE, and the
original project's synchronous API (`get_q_values`, `update_q_value`, `q_table`)."""

from __future__ import annotations

import asyncio
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from apps.orchestration.src.bandit import ope
from apps.orchestration.src.bandit import policy as pol
from apps.orchestration.src.bandit.q_learning import SoftQLearning
from apps.orchestration.src.bandit.state import encode_state
from apps.search.types import LegHit

ROOT = Path(__file__).resolve().parents[2]
ARMS = ("bm25", "dense", "hybrid_rrf", "hybrid_cc")
STATE = "en|short|what|idf-high|lead-sharp"


def run_python(code: str, env: dict[str, str] | None = None) -> str:
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={**os.environ, **(env or {})},
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


# --- state and policy ------------------------------------------------------------------------------

def test_state_keys_are_readable_and_bounded() -> None:
    look = [LegHit(1, 20.0), LegHit(2, 10.0)]
    assert encode_state("What is vitamin D?", ["vitamin", "d"], look) == "en|short|what|idf-high|lead-sharp"
    assert encode_state("세종대왕은 언제 태어났나?", ["세종", "대왕", "태어나"], []) == "ko|short|fact|idf-none|lead-none"
    flat = [LegHit(1, 5.0), LegHit(2, 4.9)]
    assert encode_state("0-dimensional biomaterials show inductive properties", ["a"] * 5, flat) == (
        "en|medium|other|idf-low|lead-flat")


def test_state_keys_and_draws_are_identical_across_processes() -> None:
    code = ("from apps.orchestration.src.bandit.state import encode_state; from apps.search.types import LegHit;"
            "from apps.core.hashing import unit_draw, normalized_value;"
            "print(encode_state('How do statins lower cholesterol?', ['statin','lower','cholesterol'],"
            " [LegHit(1, 9.0), LegHit(2, 8.0)]), unit_draw('req-1', 'bandit'), normalized_value('user-1', 'new_pipeline'))")
    outputs = {run_python(code, {"PYTHONHASHSEED": seed}) for seed in ("1", "2", "random")}
    assert len(outputs) == 1, outputs


def test_boltzmann_probabilities_sum_to_one_respect_the_floor_and_go_greedy_as_tau_falls() -> None:
    q = [0.2, 0.5, 0.45, 0.1]
    for tau in (10.0, 1.0, 0.05, 0.001):
        p = pol.boltzmann(q, tau, floor=0.08)
        assert math.isclose(sum(p), 1.0) and min(p) >= 0.08 / 4 - 1e-12
    assert pol.boltzmann(q, 1e-12, floor=0.0) == [0.0, 1.0, 0.0, 0.0]
    assert max(pol.boltzmann(q, 1e-4, floor=0.0)) > 0.999
    assert pol.boltzmann(q, 1e6, floor=0.0)[0] == pytest.approx(0.25, abs=1e-4)


def test_soft_value_is_a_smooth_max() -> None:
    q = [0.2, 0.5]
    assert pol.soft_value(q, 1e-6) == pytest.approx(0.5)
    assert pol.soft_value(q, 1.0) == pytest.approx(math.log(math.exp(0.2) + math.exp(0.5)))
    assert pol.temperature(0, 0.05, 0.005, 200) == 0.05
    assert pol.temperature(200, 0.05, 0.005, 200) == pytest.approx(0.025)
    assert pol.temperature(10**6, 0.05, 0.005, 200) == 0.005


def test_draws_follow_the_probabilities() -> None:
    p = [0.1, 0.2, 0.7]
    counts = [0, 0, 0]
    for u in np.linspace(0, 1, 10_000, endpoint=False):
        counts[pol.draw(p, float(u))] += 1
    assert [round(c, -1) for c in counts] == [1000, 2000, 7000]  # up to float rounding at the edges


def test_conservative_greedy_leaves_the_baseline_only_when_clearly_ahead() -> None:
    base = pol.ArmStats(q=0.70, q_squared=0.70**2 + 0.09, updates=400, experiences=400)
    noisy = pol.ArmStats(q=0.75, q_squared=0.75**2 + 0.09, updates=5, experiences=5)  # ahead, but on five samples
    clear = pol.ArmStats(q=0.85, q_squared=0.85**2 + 0.01, updates=400, experiences=400)
    replayed = pol.ArmStats(q=0.75, q_squared=0.75**2 + 0.09, updates=400, experiences=5)  # five experiences, replayed 80 times
    assert pol.conservative_greedy([replayed, base], baseline=1, z=1.0) == 1
    assert pol.conservative_greedy([noisy, base], baseline=1, z=1.0) == 1
    assert pol.conservative_greedy([clear, base], baseline=1, z=1.0) == 0
    assert pol.conservative_greedy([noisy, base], baseline=1, z=0.0) == 0  # z=0: plain argmax
    assert pol.conservative_greedy([None, None], baseline=1, z=1.0) == 1
    assert pol.conservative_greedy([clear, None], baseline=1, z=1.0) == 1  # default untried in this state
    assert pol.conservative_greedy([noisy, clear], baseline=None, z=1.0) == 1  # no default: plain argmax


# --- shared, persistent learning state --------------------------------------------------------------

async def test_q_values_persist_across_restarts_and_unknown_arms_are_ignored(database_url: str) -> None:
    from apps.core.config import load_settings
    from apps.core.db import create_engine

    engine = create_engine(load_settings(database_url=database_url))
    learner = SoftQLearning(alpha=0.1, arms=ARMS, engine=engine)
    for reward in (1.0, 0.0, 1.0, 1.0):
        await learner.update("en|short|what|idf-high|lead-sharp", "bm25", reward)
    await learner.update("en|short|what|idf-high|lead-sharp", "retired_arm", 5.0)
    await engine.dispose()

    engine = create_engine(load_settings(database_url=database_url))
    restarted = SoftQLearning(alpha=0.1, arms=(*ARMS, "new_arm"), engine=engine)
    await restarted.refresh(force=True)
    q = restarted.q_table["en|short|what|idf-high|lead-sharp"]
    assert len(q) == 5 and q[0] == pytest.approx(0.75)  # 1/n steps: the sample mean of four rewards
    assert q[4] == 0.0  # a new arm starts from its prior (none yet)
    assert restarted.visits("en|short|what|idf-high|lead-sharp") == 4  # the retired arm's row is ignored
    arm, probabilities = restarted.select("en|short|what|idf-high|lead-sharp", "req-1")
    assert arm in restarted.arms and math.isclose(sum(probabilities), 1.0)
    await engine.dispose()


# --- OPE ----------------------------------------------------------------------------------------------

def test_ope_recovers_a_known_policy_value() -> None:
    rng = np.random.default_rng(7)
    means = {"a": 0.2, "b": 0.5, "c": 0.8}
    logging = {"a": 0.5, "b": 0.3, "c": 0.2}
    logged = []
    for _ in range(5000):
        action = str(rng.choice(list(logging), p=list(logging.values())))
        logged.append(ope.Logged("s", action, float(rng.random() < means[action]), logging))
    target = ope.greedy_policy(lambda s: "c", list(means))  # true value 0.8
    result = ope.evaluate(logged, target, model=lambda s, a: 0.5, bootstrap=300)
    for estimator in ("ips", "snips", "dr"):
        lo, hi = result[estimator]["ci95"]
        assert lo <= 0.8 <= hi, (estimator, result[estimator])
        assert abs(result[estimator]["value"] - 0.8) < 0.05
    assert 800 < result["ess"] < 1200  # ≈ n × P(logged c) = 1000
    assert result["logged_mean_reward"] == pytest.approx(0.41, abs=0.03)



# --- the original project's synchronous API -----------------------------------------------------------

def test_sync_update_takes_arm_names_or_indices_and_q_table_reads_the_database(database_url: str) -> None:
    from apps.core.config import load_settings
    from apps.core.db import create_engine

    learner = SoftQLearning(alpha=0.1, arms=ARMS, engine=create_engine(load_settings(database_url=database_url)))
    learner.update_q_value(STATE, "bm25", 1.0, next_state=None)  # from plain synchronous code
    learner.update_q_value(STATE, 3, 0.5)  # the original API's arm index: hybrid_cc
    assert learner.q_table[STATE] == [1.0, 0.0, 0.0, 0.5]
    assert learner.get_q_values(STATE)[0] > learner.get_q_values(STATE)[3]
    with pytest.raises(ValueError, match="out of range"):
        learner.update_q_value(STATE, 9, 1.0)
    with pytest.raises(ValueError, match="unknown arm"):
        learner.update_q_value(STATE, "nope", 1.0)

    other = SoftQLearning(alpha=0.1, arms=ARMS, engine=create_engine(load_settings(database_url=database_url)))

    async def inside_a_loop() -> list[float]:
        other.update_q_value(STATE, "dense", 0.25)  # a sync call from async code still reaches the database
        return other.q_table[STATE]

    assert asyncio.run(inside_a_loop()) == [1.0, 0.25, 0.0, 0.5]
    assert learner.q_table[STATE] == [1.0, 0.0, 0.0, 0.5]  # its snapshot is recent: not re-read yet
    learner.refresh_s = 0.0
    assert learner.q_table[STATE] == [1.0, 0.25, 0.0, 0.5]  # a stale snapshot is read again


def test_get_q_learning_from_a_plain_script(tmp_path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'script.db'}"
    env = {"DATABASE_URL": url}
    run_python("from apps.core.migrations import upgrade; import os; upgrade(os.environ['DATABASE_URL'])", env)
    out = run_python(
        "from apps.orchestration.src.bandit.q_learning import get_q_learning\n"
        "q = get_q_learning()\n"
        f"q.update_q_value('{STATE}', 0, 0.9)\n"
        f"print(round(q.get_q_values('{STATE}')[0], 6), len(q.q_table))", env)
    assert out == "0.9 1"
