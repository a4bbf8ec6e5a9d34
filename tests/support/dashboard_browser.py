"""The dashboard's browser tests' shared ground: a real `monoduty dev` on a database of its own
(``dashboard``, one per test module that asks for it), one headless Chromium per module
(``playwright_browser``), a fresh context per test (``context``), and what those tests do with
them: sign in, call the API, post an alert as a sender would, notice a reload.

Module-scoped, not session-scoped: while Playwright's sync API is alive it marks the thread's
event loop as running, and the async tests after a browser module could not run theirs. tests/conftest.py
loads this module as a plugin, so a test module just names the fixtures.
"""

from __future__ import annotations

import json
import tempfile
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright

from tests.support.browser import chromium_or_skip, launch
from tests.support.processes import DevProcess, monoduty_env
from tests.support.services import Services, another

PASSWORD = "a calm password at 3am"
WIDE = {"width": 1440, "height": 900}
PHONE = {"width": 375, "height": 812}


@dataclass
class Dashboard:
    url: str
    key: str
    login_link: str
    email: str
    database_url: str  # the dev server's own database


def api(dashboard: Dashboard, method: str, path: str, body: Any = None) -> dict[str, Any]:
    request = urllib.request.Request(
        dashboard.url + path, data=json.dumps(body).encode() if body is not None else None, method=method
    )
    request.add_header("Content-Type", "application/json")
    request.add_header("Authorization", f"Bearer {dashboard.key}")
    with urllib.request.urlopen(request, timeout=10) as resp:
        return json.loads(resp.read())


def post_alert(url: str, body: bytes) -> None:
    """As a monitoring system would: a plain HTTP client, no cookie, no key."""
    request = urllib.request.Request(url, data=body, method="POST")
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=10) as resp:
        assert resp.status == 202


@contextmanager
def dev_dashboard(services: Services, **env: str) -> Iterator[Dashboard]:
    """`monoduty dev` on an empty database of its own (``env``: more settings, such as SMTP): it
    makes the first user and prints its key and one-time link."""
    with another(services) as own, tempfile.TemporaryDirectory(prefix="monoduty-dev-") as folder:
        settings = monoduty_env(
            MONODUTY_DATABASE_URL=own.database_url, MONODUTY_REDIS_URL=own.redis_url, **env
        )
        dev = DevProcess(Path(folder) / "data", settings)
        try:
            lines = dev.output().splitlines()
            key = next(line.split(": ")[-1] for line in lines if "API key" in line)
            link = next(line.split(": ")[-1] for line in lines if "sign-in link" in line)
            email = next(line.split(": ")[-1] for line in lines if line.startswith("first user"))
            yield Dashboard(dev.url, key, link, email, own.database_url)
        finally:
            assert dev.stop() == 0, dev.output()


@pytest.fixture(scope="module")
def dashboard(services: Services) -> Iterator[Dashboard]:
    """A dev server for the module; a module that needs other settings overrides this fixture."""
    with dev_dashboard(services) as found:
        yield found


@pytest.fixture(scope="module")
def playwright_browser(dashboard: Dashboard) -> Iterator[Browser]:
    """One headless Chromium; after ``dashboard``, whose set-up and clean-up run event loops."""
    chromium_or_skip()  # skips (fails under CI) before the driver starts
    with sync_playwright() as playwright:
        browser = launch(playwright)
        yield browser
        browser.close()


@pytest.fixture
def context(playwright_browser: Browser, dashboard: Dashboard) -> Iterator[BrowserContext]:
    context = playwright_browser.new_context(base_url=dashboard.url, viewport=WIDE)
    context.set_default_timeout(5000)
    yield context
    context.close()


def sign_in(context: BrowserContext, dashboard: Dashboard, password: str = PASSWORD) -> Page:
    """A page signed in through the form (the module's first test, or its fixture, set the password)."""
    page = context.new_page()
    page.goto("/sign-in")
    page.get_by_label("Email").fill(dashboard.email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Incidents", level=1)).to_be_visible()
    return page


def mark(page: Page) -> None:
    """Something only this load of the page has: gone if the page reloads."""
    page.evaluate("() => { window.monodutyTestMark = true }")


def still_marked(page: Page) -> bool:
    return bool(page.evaluate("() => window.monodutyTestMark === true"))
