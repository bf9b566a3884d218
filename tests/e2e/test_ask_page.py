"""GET /ask in headless Chromium against a real server: sign in with a read key, ask, watch the answer
stream in, open a cited passage, rate the answer and its sources (the bandit decision's reward and the
feedback row change in the database), ask a follow-up (answered as the standalone question, shown on
hover, with sources about the earlier subject), start a new conversation; the same by keyboard alone at
375 px, in Korean. No console errors and no request leaves the server's origin; the key is never in a
URL or the server's log."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from apps.core.config import load_settings
from apps.core.migrations import upgrade
from apps.runtime import build_runtime
from tests.support.browser import chromium
from tests.support.corpus import LANDMARKS
from tests.support.server import run_cli, running_server


async def ingest(url: str) -> None:
    runtime = build_runtime(load_settings(database_url=url))
    try:
        await runtime.ingestion.ingest(LANDMARKS)
    finally:
        await runtime.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, Path, Path, dict]]:
    tmp = tmp_path_factory.mktemp("ask")
    db = tmp / "ask.db"
    url = f"sqlite+aiosqlite:///{db}"
    upgrade(url)
    asyncio.run(ingest(url))
    # The bandit chooses every answer's strategy, so each answer has a decision for its rating to reward.
    with running_server(url, tmp, workers=1, FEATURE_SOFT_Q_BANDIT="true") as (base, env):
        created = run_cli(["keys", "create", "--scope", "read", "--json"], env)
        assert created.returncode == 0, created.stderr
        yield base, json.loads(created.stdout)["api_key"], db, tmp, env


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as b:
        yield b


class Watched:
    """A page with its console errors and every URL it requested."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.errors: list[str] = []
        self.urls: list[str] = []
        page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(str(e)))
        page.on("request", lambda r: self.urls.append(r.url))

    def check(self, base: str, key: str) -> None:
        assert self.errors == []
        assert self.urls and all(u.startswith(base) or u.startswith("data:") for u in self.urls), self.urls
        assert not any(key in u for u in self.urls)


def query(db: Path, sql: str, *args: object) -> list[tuple]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql, args).fetchall()


def eventually(read: Callable[[], list[tuple]], timeout_s: float = 10.0) -> list[tuple]:
    """What `read` returns once it returns rows (the page shows a result as its request completes)."""
    deadline = time.monotonic() + timeout_s
    while not (rows := read()) and time.monotonic() < deadline:
        time.sleep(0.1)
    return rows


def sign_in(page: Page, base: str, key: str) -> None:
    page.goto(f"{base}/")
    assert page.url == f"{base}/ask"
    page.fill("#login-key", key)
    page.click("#login-form button[type=submit]")
    expect(page.locator("#app")).to_be_visible()


def ask(page: Page, question: str) -> None:
    page.fill("#question", question)
    page.press("#question", "Enter")
    expect(page.locator(".turn").last.locator(".answer")).to_have_attribute("data-state", "done")


def test_ask_stream_cite_rate_and_follow_up(server: tuple[str, str, Path, Path, dict], browser: Browser,
                                           tmp_path: Path) -> None:
    base, key, db, logs, _ = server
    context = browser.new_context(viewport={"width": 1100, "height": 900}, locale="en-US")
    watched = Watched(context.new_page())
    page = watched.page
    response = httpx.get(f"{base}/ask")
    assert "default-src 'self'" in response.headers["content-security-policy"]
    assert response.headers["x-frame-options"] == "DENY"
    sign_in(page, base, key)
    expect(page.locator("#collection option")).to_have_text(["default"])

    ask(page, "Who designed the Statue of Liberty?")
    turn = page.locator(".turn").first
    answer = turn.locator(".answer")
    assert int(answer.get_attribute("data-tokens") or 0) >= 1  # it arrived as a stream of tokens
    expect(answer).to_contain_text("Bartholdi")
    expect(turn.locator(".rewritten")).to_be_hidden()  # the first question stands alone
    expect(turn.locator(".sources li").first).to_contain_text("Statue of Liberty")

    cite = answer.locator("button.cite").first
    cite.click()
    dialog = page.locator("#passage")
    expect(dialog).to_be_visible()
    expect(dialog.locator("#passage-title")).to_have_text("Statue of Liberty")
    expect(dialog.locator("#passage-snippet")).to_contain_text("copper statue")
    expect(dialog.locator("#passage-link-row")).to_be_hidden()  # no source URL: no link
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()

    request_id = turn.get_attribute("data-request-id")
    # Decisions are written in batches a moment after the answer: wait for the row, then it is unrated.
    assert eventually(lambda: query(db, "SELECT reward FROM bandit_decisions WHERE request_id = ?",
                                    request_id)) == [(None,)]
    turn.get_by_role("button", name="Helpful", exact=True).click()
    expect(turn.locator(".feedback-status")).to_contain_text("reward")
    [(reward, source)] = query(db, "SELECT reward, reward_source FROM bandit_decisions WHERE request_id = ?",
                               request_id)
    assert reward is not None and source == "explicit"
    first_chunk = int(turn.locator(".sources li").first.get_attribute("data-chunk") or 0)
    turn.get_by_role("button", name="Source 1 is relevant").click()
    expect(turn.get_by_role("button", name="Source 1 is relevant")).to_have_attribute("aria-pressed", "true")
    turn.locator(".comment summary").click()
    turn.get_by_label("Comment (optional)").fill("Bartholdi is right.")
    turn.get_by_role("button", name="Send comment").click()
    expect(turn.locator(".feedback-status")).to_contain_text("recorded")
    [(rating, relevant, irrelevant, comment)] = eventually(lambda: query(
        db, "SELECT rating, relevant_chunk_ids, irrelevant_chunk_ids, comment FROM feedback WHERE request_id = ? "
            "AND comment IS NOT NULL", request_id))
    assert (rating, json.loads(relevant), json.loads(irrelevant), comment) == (1.0, [first_chunk], [],
                                                                              "Bartholdi is right.")

    ask(page, "When was it built?")
    follow = page.locator(".turn").nth(1)
    mark = follow.locator(".rewritten")
    expect(mark).to_be_visible()
    expect(mark).to_have_attribute("data-tip", "Answered as: When was the Statue of Liberty built?")
    mark.hover()
    shown = page.evaluate("(el) => getComputedStyle(el, '::after').content", mark.element_handle())
    assert shown == '"Answered as: When was the Statue of Liberty built?"'  # the tip on hover
    expect(follow.locator(".sources li").first).to_contain_text("Statue of Liberty")
    expect(follow.locator(".answer")).to_contain_text("1886")

    page.click("#new-conversation")
    expect(page.locator(".turn")).to_have_count(0)
    ask(page, "How tall is the Eiffel Tower?")
    ask(page, "When was it built?")
    other = page.locator(".turn").nth(1)
    expect(other.locator(".rewritten")).to_have_attribute("data-tip", "Answered as: When was the Eiffel Tower built?")
    expect(other.locator(".sources li").first).to_contain_text("Eiffel Tower")
    other.locator(".sources .source-open").first.click()
    expect(page.locator("#passage-link")).to_have_attribute("href", "https://example.org/eiffel")
    page.keyboard.press("Escape")

    page.reload()  # the conversation comes back from the server, feedback and all
    expect(page.locator(".turn")).to_have_count(2)
    shot = tmp_path / "ask.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"  # docs/ask.png is one of these
    watched.check(base, key)
    assert "Bartholdi" not in page.url and key not in page.url
    assert all(key not in p.read_text() for p in logs.glob("server-*.log"))
    context.close()


def test_keyboard_only_at_375_px_in_korean(server: tuple[str, str, Path, Path, dict], browser: Browser) -> None:
    base, key, _, _, _ = server
    context = browser.new_context(viewport={"width": 375, "height": 740}, locale="ko-KR")
    watched = Watched(context.new_page())
    page = watched.page
    page.goto(f"{base}/ask")
    expect(page.locator("html")).to_have_attribute("lang", "ko")
    expect(page.locator("#login h2")).to_have_text("로그인")
    expect(page.locator("#login-key")).to_be_focused()
    page.keyboard.type(key)
    page.keyboard.press("Enter")
    expect(page.locator("#question")).to_be_focused()
    expect(page.locator("#new-conversation")).to_have_text("새 대화")
    page.keyboard.type("세종대왕은 몇 대 왕인가?")
    page.keyboard.press("Enter")
    turn = page.locator(".turn").last
    expect(turn.locator(".answer")).to_have_attribute("data-state", "done")
    expect(page.locator("#question")).to_be_focused()  # ready for the next question

    # Tab from the question box back through the turn: every control is reachable, and visibly focused.
    reached = []
    for _ in range(30):
        page.keyboard.press("Shift+Tab")
        label = page.evaluate("document.activeElement.getAttribute('aria-label') || document.activeElement.textContent")
        outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
        reached.append(label)
        assert outline != "none", label
        if label and label.startswith("출처 1:") and "관련" not in label:
            break
    assert "도움이 됨" in reached and "출처 1: 관련 있음" in reached
    page.keyboard.press("Enter")  # the citation [1]
    expect(page.locator("#passage")).to_be_visible()
    expect(page.locator("#passage-close")).to_be_focused()
    page.keyboard.press("Escape")
    expect(page.locator("#passage")).to_be_hidden()
    assert (page.evaluate("document.activeElement.getAttribute('aria-label')") or "").startswith("출처 1:")

    # A follow-up by keyboard: Tab forward to the question box, then ask.
    page.focus("#question")
    page.keyboard.type("그가 창제한 문자는?")
    page.keyboard.press("Enter")
    follow = page.locator(".turn").last
    expect(follow.locator(".answer")).to_have_attribute("data-state", "done")
    expect(follow.locator(".rewritten")).to_have_attribute("data-tip", "다음 질문으로 답함: 세종대왕이 창제한 문자는?")
    expect(follow.locator(".answer")).to_contain_text("훈민정음")
    assert page.evaluate("document.documentElement.scrollWidth") <= 375  # nothing wider than the phone
    watched.check(base, key)
    context.close()


def test_the_picker_offers_the_keys_collections_and_searches_the_one_picked(
        server: tuple[str, str, Path, Path, dict], browser: Browser) -> None:
    base, key, _, _, env = server
    admin = json.loads(run_cli(["keys", "create", "--scope", "admin", "--json"], env).stdout)["api_key"]
    made = httpx.post(f"{base}/api/v1/collections", headers={"X-API-Key": admin},
                      json={"name": "archive", "description": "pages kept apart"})
    assert made.status_code in (201, 409), made.text
    bound = httpx.post(f"{base}/api/v1/admin/api-keys", headers={"X-API-Key": admin},
                       json={"scope": "read", "collections": ["default"]})
    assert bound.status_code == 201, bound.text

    context = browser.new_context(locale="en-US")
    page = context.new_page()
    sign_in(page, base, bound.json()["api_key"])
    expect(page.locator("#collection option")).to_have_text(["default"])  # only what the key may use
    page.click("#logout")
    sign_in(page, base, key)
    expect(page.locator("#collection option")).to_have_text(["All collections", "archive", "default"])
    page.select_option("#collection", "archive")  # empty: nothing in it answers
    ask(page, "Who designed the Statue of Liberty?")
    expect(page.locator(".turn").last.locator(".answer")).to_contain_text("do not contain an answer")
    page.select_option("#collection", "")
    ask(page, "Who designed the Statue of Liberty?")
    expect(page.locator(".turn").last.locator(".sources li").first).to_contain_text("Statue of Liberty")
    context.close()


def test_a_refused_key_is_not_kept(server: tuple[str, str, Path, Path, dict], browser: Browser) -> None:
    base, _, _, _, _ = server
    context = browser.new_context()
    watched = Watched(context.new_page())
    page = watched.page
    page.goto(f"{base}/ask")
    page.fill("#login-key", "dtr_not_a_key")
    page.click("#login-form button[type=submit]")
    expect(page.locator("#refusal")).to_contain_text("invalid")
    expect(page.locator("#app")).to_be_hidden()
    assert page.evaluate("sessionStorage.getItem('dtrag-ask-key')") is None
    # The browser logs the refused fetch (a 401) as a console error: that one is expected.
    watched.errors = [e for e in watched.errors if "401" not in e]
    watched.check(base, "dtr_not_a_key")
    context.close()
