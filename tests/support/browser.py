"""A real browser for the dashboard's tests: Playwright driving Debian's Chromium.

- ``chromium_or_skip()``: the system Chromium's path; without one the test is skipped, saying how
  to install it, except under CI (``CI=true``), where a missing browser fails the run instead.
- ``launch(playwright)``: one headless browser (tests/conftest.py keeps one per session).
- ``screenshot(page, name)``: a PNG under ``SCREENSHOTS`` (a temporary folder the run prints at
  its end, never committed).
- ``axe_violations(page)``: axe-core (vendored, api/dashboard/static/vendor/) run in the page; its
  serious and critical violations.
- ``no_horizontal_scroll(page)``: the page's scroll width fits its viewport.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, Playwright

CHROMIUM = ("/usr/bin/chromium", "chromium", "chromium-browser")
AXE = Path(__file__).resolve().parents[2] / "api" / "dashboard" / "static" / "vendor" / "axe.min.js"
SCREENSHOTS: list[Path] = []  # the run's folder, once made


def chromium_or_skip() -> str:
    for candidate in CHROMIUM:
        found = shutil.which(candidate)
        if found:
            return found
    message = "no Chromium on this machine (apt-get install chromium): the dashboard's browser tests need it"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{message}; CI must have it (.ci/run installs it)")
    pytest.skip(message)


def launch(playwright: Playwright) -> Browser:
    # The registry's own browser builds cannot be downloaded here: Debian's Chromium it is.
    return playwright.chromium.launch(executable_path=chromium_or_skip(), headless=True)


def screenshot_folder() -> Path:
    if not SCREENSHOTS:
        SCREENSHOTS.append(Path(tempfile.mkdtemp(prefix="monoduty-screenshots-")))
    return SCREENSHOTS[0]


def screenshot(page: Page, name: str) -> Path:
    path = screenshot_folder() / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def axe_violations(page: Page) -> list[dict[str, Any]]:
    """axe-core's serious and critical violations on the page as it is now. The script is
    evaluated through the DevTools protocol, which the page's CSP does not govern (the page itself
    never loads it)."""
    if not page.evaluate("() => typeof window.axe !== 'undefined'"):
        page.evaluate(AXE.read_text())
    results = page.evaluate("async () => (await axe.run(document)).violations")
    return [
        {"id": v["id"], "impact": v["impact"], "nodes": [n["target"] for n in v["nodes"]][:5]}
        for v in results
        if v["impact"] in ("serious", "critical")
    ]


def no_horizontal_scroll(page: Page) -> tuple[bool, int, int]:
    width, inner = page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
    return width <= inner, width, inner
