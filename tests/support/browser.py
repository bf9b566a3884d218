"""Headless Debian Chromium driven by Playwright for Python (installed with apt-get when missing; the
Playwright wheel carries its driver, and its own browser download is never used)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from playwright.sync_api import Browser, sync_playwright

from tests.support import apt

CHROMIUM = "/usr/bin/chromium"
# Chromium's background services call Google's hosts; on a closed network they only fail and retry.
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]


def ensure_installed() -> str:
    return apt.ensure("chromium", lambda: CHROMIUM if os.access(CHROMIUM, os.X_OK) else None)


@contextmanager
def chromium() -> Iterator[Browser]:
    executable = ensure_installed()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, headless=True, args=ARGS)
        try:
            yield browser
        finally:
            browser.close()
