"""Headless Debian Chromium driven by Playwright for Python (installed with apt-get when missing; the
Playwright wheel carries its driver, and its own browser download is never used)."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

from playwright.sync_api import Browser, sync_playwright

CHROMIUM = "/usr/bin/chromium"
# Chromium's background services call Google's hosts; on a closed network they only fail and retry.
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]


def ensure_installed() -> str:
    if os.access(CHROMIUM, os.X_OK):
        return CHROMIUM
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, capture_output=True)
    subprocess.run(["apt-get", "install", "-y", "-qq", "chromium"], check=True, env=env, capture_output=True)
    if not os.access(CHROMIUM, os.X_OK):
        raise RuntimeError(f"chromium is not installed at {CHROMIUM} and apt-get could not install it "
                           f"(found: {shutil.which('chromium')})")
    return CHROMIUM


@contextmanager
def chromium() -> Iterator[Browser]:
    executable = ensure_installed()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, headless=True, args=ARGS)
        try:
            yield browser
        finally:
            browser.close()
