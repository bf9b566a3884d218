"""The strategy bandit: policy arithmetic, shared persistent state, feedback, replay, OPE, flags."""

from __future__ import annotations

import json
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
from apps.orchestration.src.bandit.replay_buffer import ReplayBuffer
from apps.orchestration.src.bandit.state import encode_state
from apps.search.types import LegHit
from tests.support.api import Api, api_client
from tests.support.corpus import corpus

ROOT = Path(__file__).resolve().parents[1]
ARMS = ("bm25", "dense", "hybrid_rrf", "hybrid_cc")


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
    base = pol.ArmStats(q=0.70, q2=0.70**2 + 0.09, n=400, m=400)
    noisy = pol.ArmStats(q=0.75, q2=0.75**2 + 0.09, n=5, m=5)  # ahead, but on five samples
    clear = pol.ArmStats(q=0.85, q2=0.85**2 + 0.01, n=400, m=400)
    replayed = pol.ArmStats(q=0.75, q2=0.75**2 + 0.09, n=400, m=5)  # five experiences, replayed 80 times
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
        await learner.update_q_value("en|short|what|idf-high|lead-sharp", "bm25", reward)
    await learner.update_q_value("en|short|what|idf-high|lead-sharp", "retired_arm", 5.0)
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


async def test_replay_buffer_is_a_bounded_fifo_in_the_database(database_url: str) -> None:
    from apps.core.config import load_settings
    from apps.core.db import create_engine

    engine = create_engine(load_settings(database_url=database_url))
    buffer = ReplayBuffer(max_size=5, engine=engine)
    for i in range(8):
        await buffer.add(f"s{i}", "bm25", i / 10, request_id=f"r{i}")
    assert await buffer.size() == 5 and len(buffer) == 5
    kept = {e.request_id for e in await buffer.sample(10)}
    assert kept == {f"r{i}" for i in range(3, 8)}  # the three oldest were evicted
    assert len(await buffer.sample(2)) == 2
    other = ReplayBuffer(max_size=5, engine=engine)  # another worker sees the same buffer
    assert await other.size() == 5
    stats = await other.stats()
    assert stats["size"] == 5 and stats["by_action"]["bm25"]["count"] == 5 and stats["total_added"] == 8
    await engine.dispose()


_LEARNER_PROCESS = """
import asyncio, sys
from apps.core.config import load_settings
from apps.core.db import create_engine
from apps.orchestration.src.bandit.q_learning import SoftQLearning
from apps.orchestration.src.bandit.replay_buffer import Experience, ReplayBuffer

async def main(url, offset):
    engine = create_engine(load_settings(database_url=url))
    learner = SoftQLearning(alpha=1e-6, engine=engine)
    buffer = ReplayBuffer(max_size=10_000, engine=engine)
    for i in range(20):  # 20 rounds of 10 new experiences, each learned twice, racing the other process
        batch = []
        for j in range(10):
            reward = (offset + i * 10 + j) / 1000
            batch.append(Experience("s", "bm25", reward, id=await buffer.add("s", "bm25", reward)))
        await learner.apply(batch)
        await learner.apply(batch)  # a replay: more updates, no new evidence
    await engine.dispose()

asyncio.run(main(sys.argv[1], int(sys.argv[2])))
"""


async def test_two_processes_learning_at_once_lose_no_update(database_url: str) -> None:
    procs = [subprocess.Popen([sys.executable, "-c", _LEARNER_PROCESS, database_url, str(offset)], cwd=ROOT,
                              stderr=subprocess.PIPE, text=True) for offset in (0, 200)]
    for p in procs:
        assert p.wait(timeout=300) == 0, p.stderr.read() if p.stderr else ""
    from apps.core.config import load_settings
    from apps.core.db import create_engine

    engine = create_engine(load_settings(database_url=database_url))
    learner = SoftQLearning(engine=engine)
    await learner.refresh(force=True)
    stats = learner.stats("s")[0]
    assert stats is not None and stats.n == 800  # every update applied
    assert stats.m == 400  # and every experience counted once as evidence
    assert stats.q == pytest.approx(sum(range(400)) / 400 / 1000, abs=1e-9)  # 1/n steps: the exact mean
    assert learner.version == 80  # one policy version per batch, from both processes
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


# --- through the API -------------------------------------------------------------------------------------

@pytest.fixture
async def api(settings):
    settings = settings.model_validate({**settings.model_dump(), "replay_learn_every": 2, "replay_batch_size": 4})
    async with api_client(settings) as client:
        await client.services.runtime.ingestion.ingest(corpus())
        yield client


async def set_flag(api: Api, name: str, **body) -> None:
    response = await api.client.put(f"/api/v1/admin/feature-flags/{name}", headers=api.headers(),
                                    json={"reason": "test", **body})
    assert response.status_code == 200, response.text


async def test_flag_off_serves_the_fixed_default_and_logs_nothing(api: Api) -> None:
    response = await api.client.post("/api/v1/search/", headers=api.headers("read"),
                                     json={"q": "vitamin D deficiency", "final_topk": 3})
    body = response.json()
    assert body["strategy"] == "hybrid_cc" and body["bandit"] is None
    assert response.headers["X-Pipeline-Variant"] == "legacy"
    feedback = await api.client.post("/api/v1/feedback", headers=api.headers("read"),
                                     json={"request_id": body["request_id"], "rating": 1})
    assert feedback.status_code == 404 and "no bandit decision" in feedback.json()["detail"]


async def test_bandit_decisions_are_logged_and_feedback_joins_them(api: Api) -> None:
    await set_flag(api, "soft_q_bandit", enabled=True)
    await set_flag(api, "experience_replay", enabled=True)
    runtime = api.services.runtime
    served = {}
    for i, q in enumerate(["vitamin D deficiency", "relational database indexes", "기계 학습 모델", "machine learning"]):
        response = await api.client.post("/api/v1/search/", headers={**api.headers("read"), "X-Request-ID": f"q{i}"},
                                         json={"q": q, "final_topk": 3})
        body = response.json()
        assert response.status_code == 200 and body["bandit"] is not None, body
        assert response.headers["X-Pipeline-Variant"] == "new"
        assert math.isclose(sum(body["bandit"]["probabilities"].values()), 1.0, abs_tol=1e-5)
        assert body["strategy"] in body["bandit"]["probabilities"]
        served[f"q{i}"] = body
    # Forcing a strategy is not a policy decision.
    forced = (await api.client.post("/api/v1/search/", headers={**api.headers("read"), "X-Request-ID": "forced"},
                                    json={"q": "vitamin", "strategy": "bm25"})).json()
    assert forced["bandit"] is None and forced["strategy"] == "bm25"

    first = await api.client.post("/api/v1/feedback", headers=api.headers("read"),
                                  json={"request_id": "q0", "rating": 0.8})
    assert first.status_code == 200 and first.json() == {"request_id": "q0", "reward": 0.8, "accepted": True,
                                                          "learned": True}
    again = await api.client.post("/api/v1/feedback", headers=api.headers("read"),
                                  json={"request_id": "q0", "rating": -1})
    assert again.json() == {"request_id": "q0", "reward": 0.8, "accepted": False, "learned": False}
    chunk = served["q1"]["hits"][0]["chunk_id"]
    relevant = await api.client.post("/api/v1/feedback", headers=api.headers("read"),
                                     json={"request_id": "q1", "relevant_chunk_ids": [chunk]})
    assert relevant.json()["reward"] == 1.0  # the marked chunk was served first: nDCG 1
    helpful = await api.client.post("/api/v1/feedback", headers=api.headers("read"),
                                    json={"request_id": "q2", "helpful": False})
    assert helpful.json()["reward"] == -1.0
    for bad in ({"request_id": "q3"}, {"request_id": "q3", "rating": 2}):
        response = await api.client.post("/api/v1/feedback", headers=api.headers("read"), json=bad)
        assert response.status_code == 422
    assert (await api.client.post("/api/v1/feedback", headers=api.headers("read"),
                                  json={"request_id": "nope", "rating": 1})).status_code == 404

    await runtime.bandit.drain()
    decisions = {r.request_id: r for r in await runtime.bandit.decisions.rewarded()}
    assert decisions["q0"].reward == 0.8 and decisions["q0"].action == served["q0"]["strategy"]
    assert decisions["q0"].state == served["q0"]["bandit"]["state"] and decisions["q0"].variant == "new"
    assert decisions["q0"].probabilities == served["q0"]["bandit"]["probabilities"]
    assert await runtime.bandit.replay.size() == 3
    await runtime.bandit.learner.refresh(force=True)
    assert runtime.bandit.learner.version >= 1 and runtime.bandit.learner.q_table  # batches ran (every 2)


async def test_implicit_reward_after_the_window_and_replay_off_stores_nothing(api: Api) -> None:
    runtime = api.services.runtime
    await set_flag(api, "soft_q_bandit", enabled=True)
    response = await api.client.post("/api/v1/search/", headers={**api.headers("read"), "X-Request-ID": "implicit"},
                                     json={"q": "vitamin D sunlight", "final_topk": 3})
    assert response.json()["bandit"] is not None
    await runtime.bandit.decisions.flush()
    runtime.bandit.settings = runtime.settings.model_validate({**runtime.settings.model_dump(),
                                                                "bandit_reward_window_s": 0})
    assert await runtime.bandit.settle() == 1
    [row] = await runtime.bandit.decisions.rewarded()
    assert row.reward_source == "implicit" and 0 < row.reward <= 1  # query terms found in the top hits
    assert await runtime.bandit.replay.size() == 0  # experience_replay is off: an online update instead
    await runtime.bandit.learner.refresh(force=True)
    assert runtime.bandit.learner.visits(row.state) == 1
    late = await api.client.post("/api/v1/feedback", headers=api.headers("read"),
                                 json={"request_id": "implicit", "rating": 1})
    assert late.json()["accepted"] is False
    # BANDIT_IMPLICIT_REWARD=none: a decision without feedback never becomes a reward.
    runtime.bandit.settings = runtime.bandit.settings.model_validate(
        {**runtime.bandit.settings.model_dump(), "bandit_implicit_reward": "none"})
    await api.client.post("/api/v1/search/", headers={**api.headers("read"), "X-Request-ID": "silent"},
                          json={"q": "vitamin D sunlight"})
    await runtime.bandit.decisions.flush()
    assert await runtime.bandit.settle() == 0
    assert (await runtime.bandit.decisions.get("silent")).implicit_reward is None


async def test_answers_use_the_bandit_and_report_groundedness_as_reward(api: Api) -> None:
    await set_flag(api, "soft_q_bandit", enabled=True)
    response = await api.client.post("/answer", headers={**api.headers("read"), "X-Request-ID": "answer-1"},
                                     json={"q": "What does vitamin D deficiency cause?"})
    assert response.status_code == 200 and response.headers["X-Pipeline-Variant"] == "new"
    row = await api.services.runtime.bandit.decisions.get("answer-1")
    assert row is not None and row.endpoint == "answer" and row.action == response.json()["strategy"]
    assert row.implicit_reward == pytest.approx(response.json()["confidence"], abs=1e-6)


def test_operator_snippets_and_cli(tmp_path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'ops.db'}"
    env = {"DATABASE_URL": url, "COLUMNS": "200"}
    run_python("from apps.core.migrations import upgrade; import os; upgrade(os.environ['DATABASE_URL'])", env)
    run_python("""
import asyncio
from apps.orchestration.src.bandit.q_learning import get_q_learning
from apps.orchestration.src.bandit.replay_buffer import ReplayBuffer
async def main():
    q = get_q_learning()
    for state, arm, r in [("en|short|what|idf-high|lead-sharp", "bm25", 0.9), ("ko|long|other|idf-low|lead-flat", "hybrid_cc", 0.6)]:
        await q.update_q_value(state, arm, r)
    await ReplayBuffer().add("en|short|what|idf-high|lead-sharp", "bm25", 0.9, request_id="r1")
asyncio.run(main())
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
    assert csv_lines[0] == "state,action,q,n,probability,greedy" and len(csv_lines) == 1 + 2 * 4
    assert json.loads(dtrag("replay", "stats"))["size"] == 1
    learned = json.loads(dtrag("bandit", "learn", "--batches", "2"))
    assert learned["applied"] == 2 and learned["policy_version"] == 2
    assert json.loads(dtrag("bandit", "ope", "--json"))["n"] == 0  # nothing logged yet: says so
