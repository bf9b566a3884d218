"""GET /dashboard in headless Chromium against a real server with real traffic: it refuses without an
admin key, draws its charts from the data, and a flag changed on the page is changed for the service
(GET /feature-flags) and audited.

The server runs a canary drill (faults in the `new` variant, a 1 s controller), so the charts carry a
real automatic rollback on their time axis."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect

from apps.core.config import load_settings
from apps.core.migrations import upgrade
from apps.runtime import build_runtime
from tests.support.browser import chromium
from tests.support.corpus import corpus
from tests.support.server import run_cli, running_server

QUERIES = ["vitamin D deficiency", "relational database indexes", "machine learning models", "sunlight and bones",
           "B-tree indexes on large tables", "supervised learning examples", "PostgreSQL queries", "기계 학습 모델",
           "세종대왕 훈민정음"]
DRILL = {"FEATURE_SOFT_Q_BANDIT": "true", "FEATURE_EXPERIENCE_REPLAY": "true", "REPLAY_LEARN_EVERY": "2",
         "REPLAY_BATCH_SIZE": "4", "USE_NEW_PIPELINE": "true", "NEW_PIPELINE_ROLLOUT_PERCENTAGE": "0.5",
         "FAULT_ERROR_RATE": "0.2", "CANARY_INTERVAL_S": "1", "CANARY_MIN_SAMPLES": "12"}
def key(env: dict[str, str], scope: str) -> str:
    created = run_cli(["keys", "create", "--scope", scope, "--json"], env)
    assert created.returncode == 0, created.stderr
    return json.loads(created.stdout)["api_key"]


async def ingest(url: str) -> None:
    # Straight into the database before the server starts: this test is about the dashboard, not ingestion.
    runtime = build_runtime(load_settings(database_url=url))
    try:
        await runtime.ingestion.ingest(corpus())
    finally:
        await runtime.close()


def traffic(base: str, read: str) -> None:
    """Searches and answers through the bandit on both variants, feedback on what it served, until the
    canary controller rolls the faulty `new` variant back."""
    with httpx.Client(base_url=base, timeout=60) as client:
        h = {"X-API-Key": read}
        for i in range(120):
            q = QUERIES[i % len(QUERIES)]
            r = client.post("/answer" if i % 4 == 3 else "/api/v1/search", headers=h, json={"q": q})
            if r.status_code == 200 and r.json().get("bandit"):
                client.post("/api/v1/feedback", headers=h,
                            json={"request_id": r.json()["request_id"], "rating": 0.75 if i % 3 else -0.5})
            if i >= 40 and client.get("/feature-flags").json()["canary"]["rollout_fraction"] == 0:
                return
            time.sleep(0.25)  # spread over several 5 s buckets
    raise AssertionError("the canary controller did not roll the faulty variant back")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, str]]:
    tmp = tmp_path_factory.mktemp("dashboard")
    url = f"sqlite+aiosqlite:///{tmp / 'dashboard.db'}"
    upgrade(url)
    asyncio.run(ingest(url))
    with running_server(url, tmp, workers=1, **DRILL) as (base, env):
        admin, read = key(env, "admin"), key(env, "read")
        traffic(base, read)
        yield base, admin, read


@pytest.fixture
def page() -> Iterator[Page]:
    refused: list[str] = []
    with chromium() as browser:
        context = browser.new_context(viewport={"width": 1280, "height": 1400})
        page = context.new_page()
        page.on("console", lambda m: refused.append(m.text) if "Content Security Policy" in m.text else None)
        yield page
        context.close()
    assert refused == []  # the page's Content-Security-Policy refuses nothing the page does


def login(page: Page, base: str, api_key: str) -> None:
    page.goto(f"{base}/dashboard")
    page.fill("#login-key", api_key)
    page.click("#login-form button[type=submit]")


def test_refused_without_a_key_and_with_a_read_key(server: tuple[str, str, str], page: Page) -> None:
    base, _, read = server
    page.goto(f"{base}/dashboard")
    expect(page.locator("#login")).to_be_visible()
    expect(page.locator("#app")).to_be_hidden()
    status = page.evaluate("fetch('/api/v1/admin/dashboard/learning').then((r) => r.status)")
    assert status == 401  # the data, not only the page, needs the key

    login(page, base, read)
    expect(page.locator("#refusal")).to_contain_text("scope 'read'")
    expect(page.locator("#app")).to_be_hidden()
    assert page.evaluate("sessionStorage.getItem('dtrag-admin-key')") is None  # a refused key is not kept


def test_admin_sees_charts_learning_and_health(server: tuple[str, str, str], page: Page, tmp_path: Path) -> None:
    base, admin, _ = server
    login(page, base, admin)
    expect(page.locator("#app")).to_be_visible()
    page.select_option("#window", "5")  # the traffic is seconds old: 5 s buckets spread it over the axis
    for chart in ("#chart-rate", "#chart-errors", "#chart-p95"):
        expect(page.locator(chart)).to_have_attribute("data-window", "5")
        expect(page.locator(chart)).to_have_attribute("data-points", re.compile(r"^([3-9]|[1-9][0-9]+)$"))
        points = int(page.get_attribute(chart, "data-points") or 0)
        assert page.locator(f"{chart} circle.point").count() == points > 0
    variants = set(page.eval_on_selector_all("#chart-rate path.series", "ps => ps.map((p) => p.dataset.variant)"))
    assert {"new", "legacy"} <= variants
    assert page.locator("#chart-errors line.sla").count() == 1 and page.locator("#chart-p95 line.sla").count() == 1
    assert page.locator("#chart-rate line.mark").count() >= 1  # the rollback, on the time axis
    expect(page.locator("#verdicts tbody")).to_contain_text("breach")
    assert int(page.get_attribute("#qtable", "data-cells") or 0) > 0
    assert page.eval_on_selector("#qtable td.cell:not(.empty)", "td => td.style.background").startswith("rgb")
    assert page.locator("#qtable td.greedy").count() == page.locator("#qtable tbody tr").count() > 0
    expect(page.locator("#decisions tbody tr").first).to_be_visible()
    expect(page.locator("#learning-facts")).to_contain_text("DR ")
    expect(page.locator("#health-list")).to_contain_text("connected")
    expect(page.locator("#health-list")).to_contain_text("extractive")
    shot = tmp_path / "dashboard.png"
    page.screenshot(path=str(shot), clip={"x": 0, "y": 0, "width": 1280, "height": 1200})
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"  # docs/dashboard.png is one of these


def test_a_flag_changed_on_the_page_is_changed_and_audited(server: tuple[str, str, str], page: Page) -> None:
    base, admin, _ = server
    login(page, base, admin)
    expect(page.locator("#flags tbody tr")).to_have_count(len(httpx.get(f"{base}/feature-flags").json()["flags"]))
    page.select_option("#ff-name", "meta_planner")
    page.select_option("#ff-enabled", "true")
    page.fill("#ff-rollout", "25")
    page.fill("#ff-reason", "dashboard drill: quarter rollout")
    page.click("#flag-form button[type=submit]")
    expect(page.locator("#ff-result")).to_have_text("meta_planner updated")
    flag = httpx.get(f"{base}/feature-flags").json()["flags"]["meta_planner"]
    assert flag["enabled"] is True and flag["rollout_fraction"] == 0.25 and flag["source"] == "override"
    expect(page.locator("#history tbody")).to_contain_text("dashboard drill: quarter rollout")

    page.click("#flags button[data-flag=meta_planner]")  # the row's kill switch
    page.fill("#ff-reason", "dashboard drill: kill")
    page.click("#flag-form button[type=submit]")
    expect(page.locator("#ff-result")).to_have_text("meta_planner updated")
    assert httpx.get(f"{base}/feature-flags").json()["flags"]["meta_planner"]["kill"] is True
    history = httpx.get(f"{base}/api/v1/admin/feature-flags/meta_planner/history",
                        headers={"X-API-Key": admin}).json()
    assert [h["reason"] for h in history[:2]] == ["dashboard drill: kill", "dashboard drill: quarter rollout"]
    assert history[0]["actor"].startswith("api-key:") and history[0]["new"]["kill"] is True
    expect(page.locator("#flags tbody tr", has_text="meta_planner")).to_contain_text("killed")
