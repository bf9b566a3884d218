"""The durable-worker rollback runbook's operator calls against a real `dtrag serve --workers 2`: a
cleanup reaches both workers and says what each freed; a graceful restart replaces both with workers
that read the settings again, while a request in flight finishes and no request fails. (A single
process refuses the restart with 409: tests/integration/test_hardening.py.)"""

from __future__ import annotations

import concurrent.futures
import json
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from apps.core.migrations import upgrade
from tests.support.server import run_cli, running_server


def _workers_seen(base: str, want: int, deadline_s: float = 30) -> set[str]:
    seen: set[str] = set()
    deadline = time.monotonic() + deadline_s
    while len(seen) < want and time.monotonic() < deadline:
        seen.add(httpx.get(f"{base}/feature-flags", timeout=10).json()["served_by"])
    return seen


def _restart_under_load(base: str, admin: dict[str, str], before: set[str],
                        pool: concurrent.futures.ThreadPoolExecutor,
                        probe: Callable[[], int]) -> tuple[concurrent.futures.Future[int], set[str]]:
    """A graceful restart while a slow request is in flight and /health is probed; the new workers."""
    probes = pool.submit(probe)
    slow = pool.submit(httpx.post, f"{base}/api/v1/search", timeout=60, json={"q": "vitamin D"},
                       headers={**admin, "X-User-Id": "slow-user"})
    time.sleep(0.8)  # the slow request is in flight in one of the old workers
    restart = httpx.post(f"{base}/api/admin/graceful-restart", headers=admin, timeout=10)
    assert restart.status_code == 202, restart.text
    assert set(restart.json()["workers"]) == {int(w.rsplit(":", 1)[1]) for w in before}
    in_flight = slow.result()
    assert in_flight.status_code == 200 and in_flight.headers["X-Pipeline-Variant"] == "new"
    deadline = time.monotonic() + 120
    while True:
        after = _workers_seen(base, 2, 10)
        if len(after) == 2 and not after & before:
            return probes, after
        assert time.monotonic() < deadline, (before, after)
        time.sleep(0.3)


def test_cleanup_and_graceful_restart_reach_every_worker(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'ops.db'}"
    upgrade(url)
    (tmp_path / ".env").write_text("RATE_LIMIT_PER_MINUTE=600\n")
    with running_server(url, tmp_path, workers=2, cwd=tmp_path, FAULT_LATENCY_MS="3000",
                        CLEANUP_POLL_S="0.5") as (base, env):
        created = run_cli(["keys", "create", "--scope", "admin", "--json"], env)
        admin = {"X-API-Key": json.loads(created.stdout)["api_key"]}
        before = _workers_seen(base, 2)
        assert len(before) == 2, before
        for i in range(8):  # something in both workers' analyser caches
            warm = httpx.post(f"{base}/api/v1/search", headers=admin, json={"q": f"warm {i}"}, timeout=30)
            assert warm.status_code == 200

        cleanup = httpx.post(f"{base}/api/admin/cleanup", headers=admin, json={"force_gc": True, "clear_caches": True},
                             timeout=30)
        assert cleanup.status_code == 200, cleanup.text
        report = cleanup.json()
        assert {w["worker"] for w in report["workers"]} == before, report  # each worker cleared and said so
        assert all(w["caches_cleared"] and w["gc_collected"] is not None for w in report["workers"])
        assert report["expected_workers"] == 2 and report["rss_mb_before"] > 0

        # Only the allowlisted user gets the canary variant, and with it the drill's 3 s of latency.
        flag = httpx.put(f"{base}/api/v1/admin/feature-flags/new_pipeline", headers=admin, timeout=10,
                         json={"enabled": True, "rollout_fraction": 0, "user_ids": ["slow-user"], "reason": "drill"})
        assert flag.status_code == 200
        time.sleep(2.5)  # every worker has the flag
        (tmp_path / ".env").write_text("RATE_LIMIT_PER_MINUTE=777\n")
        failures: list[str] = []
        stop = threading.Event()

        def probe() -> int:
            n = 0
            with httpx.Client(base_url=base, timeout=15) as client:
                while not stop.is_set():
                    try:
                        r = client.get("/health")
                        if r.status_code != 200:
                            failures.append(f"/health {r.status_code}")
                    except httpx.HTTPError as exc:
                        failures.append(repr(exc))
                    n += 1
                    time.sleep(0.05)
            return n

        with concurrent.futures.ThreadPoolExecutor(3) as pool:
            try:
                probes, _ = _restart_under_load(base, admin, before, pool, probe)
            finally:
                stop.set()
            assert probes.result() > 20
        assert failures == []  # nothing refused or dropped while the workers were replaced
        settings = {httpx.get(f"{base}/debug", headers=admin, timeout=10).json()["settings"]["rate_limit_per_minute"]
                    for _ in range(6)}
        assert settings == {777}  # the new workers read .env again
        audit = httpx.get(f"{base}/api/v1/admin/actions", headers=admin, timeout=10).json()
        assert [a["action"] for a in audit][:1] == ["graceful-restart"] and audit[0]["actor"].startswith("api-key:")

