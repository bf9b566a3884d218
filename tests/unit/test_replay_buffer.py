"""Experience replay: a bounded FIFO in the database shared by every worker, safe to build in scripts."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from apps.core.config import load_settings
from apps.core.db import create_engine
from apps.orchestration.src.bandit.replay import ReplayBuffer
from apps.orchestration.src.bandit.soft_q import SoftQLearning

ROOT = Path(__file__).resolve().parents[2]


async def test_replay_buffer_is_a_bounded_fifo_in_the_database(database_url: str) -> None:
    engine = create_engine(load_settings(database_url=database_url))
    buffer = ReplayBuffer(engine, 5)
    for i in range(8):
        await buffer.add(f"s{i}", "bm25", i / 10, request_id=f"r{i}")
    assert await buffer.size() == 5 and len(buffer) == 5
    kept = {e.request_id for e in await buffer.sample(10)}
    assert kept == {f"r{i}" for i in range(3, 8)}  # the three oldest were evicted
    assert len(await buffer.sample(2)) == 2
    other = ReplayBuffer(engine, 5)  # another worker sees the same buffer
    assert await other.size() == 5
    stats = await other.stats()
    assert stats["size"] == 5 and stats["by_action"]["bm25"]["count"] == 5 and stats["total_added"] == 8
    await engine.dispose()


_LEARNER_PROCESS = """
import asyncio, sys
import pytest

from apps.core.config import load_settings
from apps.core.db import create_engine
from apps.orchestration.src.bandit.replay import Experience, ReplayBuffer
from apps.orchestration.src.bandit.soft_q import SoftQLearning

async def main(url, offset):
    engine = create_engine(load_settings(database_url=url))
    learner = SoftQLearning(alpha=1e-6, engine=engine)
    buffer = ReplayBuffer(engine, 10_000)
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
    engine = create_engine(load_settings(database_url=database_url))
    learner = SoftQLearning(engine=engine)
    await learner.refresh(force=True)
    stats = learner.stats("s")[0]
    assert stats is not None and stats.updates == 800  # every update applied
    assert stats.experiences == 400  # and every experience counted once as evidence
    assert stats.q == pytest.approx(sum(range(400)) / 400 / 1000, abs=1e-9)  # 1/n steps: the exact mean
    assert learner.version == 80  # one policy version per batch, from both processes
    await engine.dispose()


async def test_a_script_buffer_never_trims_the_shared_table(database_url: str) -> None:
    engine = create_engine(load_settings(database_url=database_url))
    serving = ReplayBuffer(engine, 100)
    for i in range(30):
        await serving.add(f"s{i}", "bm25", 0.5, request_id=f"r{i}")
    script = ReplayBuffer(engine, 100, max_size=10)  # what the door's ReplayBuffer(max_size=10) builds
    await script.add("s-script", "dense", 1.0, "next-state")  # the original's (state, action, reward, next_state)
    assert await serving.size() == 31  # nothing was evicted for the script's max_size
    assert await script.size() == 10  # the script sees a window on the newest ten
    window = {e.request_id for e in await script.sample(50)}
    assert len(window) == 10 and "r20" not in window and "r21" in window
    await engine.dispose()


def test_replay_buffer_len_from_a_plain_script(tmp_path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'script.db'}"
    env = {**os.environ, "DATABASE_URL": url, "REPLAY_MAX_SIZE": "50"}
    code = ("from apps.core.migrations import upgrade; import os, asyncio; upgrade(os.environ['DATABASE_URL'])\n"
            "from apps.orchestration.src.bandit.replay_buffer import ReplayBuffer\n"
            "b = ReplayBuffer(max_size=3)\n"
            "for i in range(5): asyncio.run(b.add('s', 'bm25', 0.1 * i))\n"
            "print(len(b), len(ReplayBuffer()))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["3", "5"]
