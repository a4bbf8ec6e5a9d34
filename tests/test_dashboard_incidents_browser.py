"""The incident list, an incident, the webhook pages and password reset in a real browser
(Playwright driving Debian's Chromium) against a real `monoduty dev` with SMTP to a local server:
filters in a shareable URL, a selection acknowledged at once, pages of 50, a live refresh that
keeps what was ticked, reassign and notes, the webhook's edit form, pause, test, delete, copy
buttons, and a password reset by email. Screenshots at 1440 and 375 px go to the folder the run
prints; axe-core checks every page.

Its own `monoduty dev` (and browser), like tests/test_dashboard_browser.py: the sync Playwright
API must not outlive the module (it marks the thread's event loop as running)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import re
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import asyncpg
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from tests.support.browser import axe_violations, no_horizontal_scroll, screenshot
from tests.support.dashboard import insert_incidents
from tests.support.dashboard_browser import (
    PASSWORD,
    PHONE,
    Dashboard,
    api,
    dev_dashboard,
    mark,
    post_alert,
    sign_in,
    still_marked,
)
from tests.support.processes import wait_for
from tests.support.providers import SmtpServer
from tests.support.services import Services

pytestmark = pytest.mark.browser  # run with -m browser (.ci/run does)

LINK = re.compile(r"http://127\.0\.0\.1:\d+/reset-password/mdr_[A-Za-z0-9_-]{43}")


def post_json(url: str, body: dict[str, Any]) -> None:
    post_alert(url, json.dumps(body).encode())


def stored(dashboard: Dashboard, webhook_id: str, severities: list[str]) -> list[str]:
    """Open incidents written straight to the dev server's database (many, at once). In a thread
    of its own: the sync Playwright API holds this thread's event loop."""

    async def insert() -> list[str]:
        pool = await asyncpg.create_pool(dashboard.database_url, min_size=1, max_size=1)
        try:
            return await insert_incidents(pool, webhook_id, severities, title="Checkout latency")
        finally:
            await pool.close()

    with concurrent.futures.ThreadPoolExecutor(1) as executor:
        return executor.submit(asyncio.run, insert()).result()


@pytest.fixture(scope="module")
def smtp() -> Iterator[SmtpServer]:
    with SmtpServer() as server:
        yield server


@pytest.fixture(scope="module")
def dashboard(services: Services, smtp: SmtpServer) -> Iterator[Dashboard]:
    """This module's dev server sends email (password reset), and its user has a password."""
    with dev_dashboard(
        services, MONODUTY_SMTP_HOST=smtp.host, MONODUTY_SMTP_PORT=str(smtp.port), MONODUTY_SMTP_TLS="none"
    ) as found:
        api(found, "POST", "/api/auth/password", {"newPassword": PASSWORD})
        yield found


def check_page(
    page: Page, name: str, problems: list[str], phone: Page | None = None, *, width: str = "1440"
) -> None:
    """Screenshot at 1440 (and 375 px on ``phone``), axe-core, and no sideways scroll on a phone."""
    screenshot(page, f"{name}-{width}")
    problems += [f"{name}: axe {v}" for v in axe_violations(page)]
    if phone is not None:
        phone.goto(page.url)
        screenshot(phone, f"{name}-375")
        fits, scroll, inner = no_horizontal_scroll(phone)
        if not fits:
            problems.append(f"{name} at 375 px scrolls sideways ({scroll} > {inner})")
        problems += [f"{name} at 375 px: axe {v}" for v in axe_violations(phone)]


def incident_rows(page: Page) -> Any:
    return page.locator("table.incidents tbody tr")


def test_filters_a_selection_pages_and_a_live_refresh(
    playwright_browser: Browser, context: BrowserContext, dashboard: Dashboard
) -> None:
    checkout = api(dashboard, "POST", "/api/webhooks", {"name": "Checkout", "notificationTypes": ["EMAIL"]})[
        "webhook"
    ]
    batch = api(dashboard, "POST", "/api/webhooks", {"name": "Batch jobs", "notificationTypes": ["EMAIL"]})[
        "webhook"
    ]
    stored(dashboard, checkout["id"], ["error"] * 57)
    stored(dashboard, batch["id"], ["critical"] * 3)
    page = sign_in(context, dashboard)
    phone_context = playwright_browser.new_context(
        base_url=dashboard.url, viewport=PHONE, storage_state=context.storage_state()
    )
    phone = phone_context.new_page()
    problems: list[str] = []
    try:
        expect(page).to_have_title("(60) Incidents · Monoduty")  # before the two alerts below
        expect(incident_rows(page)).to_have_count(50)
        check_page(page, "incidents-many", problems, phone)

        # 1. a filter swaps the list, no reload, and the address bar gets a URL to share
        mark(page)
        page.get_by_label("Severity").select_option("critical")
        expect(incident_rows(page)).to_have_count(3)
        expect(page).to_have_url(re.compile(r"/\?severity=critical$"))
        assert still_marked(page)
        # the swapped-in list is live too, with its filters: a critical alert joins it, a warning not
        post_json(checkout["webhook_url"], {"title": "Disk filling on db-1", "severity": "warning"})
        post_json(checkout["webhook_url"], {"title": "Checkout down", "severity": "critical"})
        expect(incident_rows(page).first).to_contain_text("Checkout down", timeout=10000)
        expect(incident_rows(page)).to_have_count(4)
        assert still_marked(page)
        page.get_by_label("Webhook").select_option(label="Batch jobs")
        expect(page).to_have_url(re.compile(rf"/\?webhook={batch['id']}&severity=critical$"))
        shared = context.new_page()
        shared.goto(page.url)
        expect(incident_rows(shared)).to_have_count(3)
        expect(shared.get_by_label("Severity")).to_have_value("critical")
        expect(shared.get_by_label("Webhook")).to_have_value(batch["id"])
        shared.close()
        check_page(page, "incidents-filtered", problems, phone)

        # 2. two rows ticked by keyboard, acknowledged in one go
        for row in (0, 1):
            incident_rows(page).nth(row).get_by_role("checkbox").focus()
            page.keyboard.press("Space")
        page.get_by_role("button", name="Acknowledge selected").click()
        expect(page.get_by_role("status")).to_have_text("Acknowledged 2 incidents.")
        expect(incident_rows(page).filter(has_text="Acknowledged")).to_have_count(2)
        expect(page).to_have_title("(60) Incidents · Monoduty")  # 62 triggered, 2 acknowledged
        expect(page.get_by_label("Severity")).to_have_value("critical")  # the filters stay

        # 3. "select all" and resolve: the filtered list empties, and says why
        page.get_by_role("checkbox", name="Select all incidents shown").check()
        page.get_by_role("button", name="Resolve selected").click()
        expect(page.get_by_role("status")).to_have_text("Resolved 3 incidents.")
        expect(page.get_by_role("heading", name="No open incidents match these filters")).to_be_visible()

        # 4. pages of 50: the 59 left come as 50 and 9
        page.get_by_role("link", name="Clear filters").click()
        expect(incident_rows(page)).to_have_count(50)
        page.get_by_role("link", name="Older incidents").click()
        expect(incident_rows(page)).to_have_count(9)
        page.get_by_role("link", name="Back to the newest").click()
        expect(incident_rows(page)).to_have_count(50)

        # 5. a box ticked, then an alert arrives: the list refreshes live and the box stays ticked
        mark(page)
        first = incident_rows(page).first.get_by_role("checkbox")
        first.check()
        post_json(checkout["webhook_url"], {"title": "Payment provider timeouts", "severity": "critical"})
        expect(incident_rows(page).first).to_contain_text("Payment provider timeouts", timeout=10000)
        assert still_marked(page), "the page reloaded"
        expect(page.locator("table.incidents input[name=incident]:checked")).to_have_count(1)
        assert problems == []
    finally:
        phone_context.close()


def test_an_incident_reassigned_noted_and_its_payload(
    playwright_browser: Browser, context: BrowserContext, dashboard: Dashboard
) -> None:
    team = api(dashboard, "POST", "/api/teams", {"name": "Payments"})["team"]
    api(
        dashboard,
        "POST",
        f"/api/teams/{team['id']}/members",
        {"email": "backup@example.com", "role": "responder"},
    )
    me = api(dashboard, "GET", "/api/auth/me")["user"]
    policy = api(
        dashboard,
        "POST",
        "/api/escalation-policies",
        {
            "name": "Payments",
            "teamId": team["id"],
            "steps": [{"delayMinutes": 30, "targets": [{"type": "user", "id": me["id"]}]}],
        },
    )["escalation_policy"]
    hook = api(
        dashboard,
        "POST",
        "/api/webhooks",
        {
            "name": "Payments",
            "notificationTypes": ["EMAIL"],
            "teamId": team["id"],
            "escalationPolicyId": policy["id"],
        },
    )["webhook"]
    post_json(
        hook["webhook_url"],
        {
            "title": "Card declines above 5%",
            "severity": "critical",
            "details": {"region": "eu-west", "rate": 0.07},
        },
    )
    found = wait_for(
        lambda: api(dashboard, "GET", f"/api/incidents?webhook={hook['id']}")["incidents"], "the incident"
    )[0]
    page = sign_in(context, dashboard)
    phone_context = playwright_browser.new_context(
        base_url=dashboard.url, viewport=PHONE, storage_state=context.storage_state()
    )
    phone = phone_context.new_page()
    problems: list[str] = []
    try:
        page.goto(f"/incidents/{found['id']}")
        expect(page.get_by_role("heading", level=1)).to_contain_text("Card declines")
        check_page(page, "incident-triggered", problems, phone)

        # the payload: collapsed, opened by keyboard, pretty-printed
        payload = page.locator(".payload").first
        expect(payload).to_be_hidden()
        page.locator("details.alert summary").first.focus()
        page.keyboard.press("Enter")
        expect(payload).to_be_visible()
        expect(payload).to_contain_text('"region": "eu-west"')
        assert '\n  "details": {' in payload.inner_text()

        # reassign to the other member: they are paged now, and the timeline says so (live)
        mark(page)
        page.get_by_label("Reassign to").select_option(label="backup@example.com")
        page.get_by_role("button", name="Reassign and page now").click()
        expect(page.locator(".timeline")).to_contain_text("reassigned to backup@example.com")
        expect(page.locator(".facts")).to_contain_text("backup@example.com")

        # a note
        page.get_by_label("Note (what you found, what you did)").fill(
            "Provider <b>status</b> page says degraded"
        )
        page.get_by_role("button", name="Add note").click()
        expect(page.locator(".notes")).to_contain_text("Provider <b>status</b> page says degraded")
        check_page(page, "incident-reassigned", problems, phone)
        assert problems == []
    finally:
        phone_context.close()


def test_a_webhook_edited_paused_tested_copied_and_deleted(
    playwright_browser: Browser, context: BrowserContext, dashboard: Dashboard
) -> None:
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=dashboard.url)
    hook = api(
        dashboard, "POST", "/api/webhooks", {"name": "Staging cluster", "notificationTypes": ["EMAIL"]}
    )["webhook"]
    page = sign_in(context, dashboard)
    phone_context = playwright_browser.new_context(
        base_url=dashboard.url, viewport=PHONE, storage_state=context.storage_state()
    )
    phone = phone_context.new_page()
    problems: list[str] = []
    try:
        page.goto(f"/webhooks/{hook['id']}")
        check_page(page, "webhook-detail", problems, phone)

        # every sender's configuration, each copied by its button (keyboard: Enter on it)
        for sender in ("Alertmanager", "Grafana", "curl", "PagerDuty", "Opsgenie"):
            button = page.get_by_role("button", name=re.compile(f"^Copy {sender}"))
            button.focus()
            page.keyboard.press("Enter")
            key = button.get_attribute("data-copy")
            expect(page.locator(f"[data-copy={key}] + [role=status]")).to_have_text("Copied.")
            copied = page.evaluate("() => navigator.clipboard.readText()")
            assert copied == page.locator(f"#{key}").inner_text(), sender
        token = hook["webhook_url"].rsplit("/", 1)[1]
        assert f"url: {hook['webhook_url']}/v2/enqueue" in page.locator("#config-pagerduty").inner_text()
        assert f"api_key: {token}" in page.locator("#config-opsgenie").inner_text()

        # edit: a field error at its field, then saved
        page.get_by_role("link", name="Edit").click()
        expect(page.get_by_label("Name", exact=True)).to_have_value("Staging cluster")
        check_page(page, "webhook-edit", problems, phone)
        page.get_by_role("checkbox", name="SMS", exact=True).check()
        page.get_by_label("SMS targets").fill("not a number")
        page.get_by_role("button", name="Save changes").click()
        expect(page.get_by_label("SMS targets")).to_have_attribute("aria-invalid", "true")
        expect(page.locator("#target_sms-error")).to_contain_text("SMS targets")
        check_page(page, "webhook-edit-error", problems)  # a POST's answer: at 1440 px only
        page.get_by_label("SMS targets").fill("+14155550123")
        page.get_by_label("Name", exact=True).fill("Staging cluster (eu)")
        page.get_by_role("button", name="Save changes").click()
        expect(page.get_by_role("heading", name="Staging cluster (eu)", level=1)).to_be_visible()
        expect(page.get_by_role("status").first).to_have_text("Saved.")

        # pause: its URL refuses alerts; resume
        page.get_by_role("button", name="Pause").click()
        expect(page.locator(".page-head")).to_contain_text("Paused")
        try:
            post_json(hook["webhook_url"], {"title": "refused"})
            raise AssertionError("a paused webhook took an alert")
        except urllib.error.HTTPError as exc:
            assert exc.code == 409
        page.get_by_role("button", name="Resume").click()
        expect(page.locator(".page-head")).to_contain_text("Active")

        # a test send: its result on the page
        page.get_by_role("button", name="Send a test alert").click()
        expect(page.get_by_role("status").first).to_contain_text("A test alert is on its way")
        deadline = time.monotonic() + 15
        while "Email to" not in page.locator("#last-test").inner_text() and time.monotonic() < deadline:
            page.reload()
        expect(page.locator("#last-test")).to_contain_text("Email to")

        # delete: a page that names it; "Keep it" keeps it, Delete deletes
        page.get_by_role("link", name="Delete…").click()
        expect(page.get_by_role("heading", level=1)).to_have_text(
            "Delete the webhook “Staging cluster (eu)”?"
        )
        check_page(page, "webhook-delete", problems, phone)
        page.get_by_role("link", name="Keep it").click()
        expect(page.get_by_role("heading", name="Staging cluster (eu)", level=1)).to_be_visible()
        page.get_by_role("link", name="Delete…").click()
        page.get_by_role("button", name="Delete “Staging cluster (eu)”").click()
        expect(page.get_by_role("status")).to_contain_text("The webhook is deleted")
        expect(page.get_by_role("link", name="Staging cluster (eu)")).to_have_count(0)
        assert problems == []
    finally:
        phone_context.close()


def test_a_forgotten_password_is_reset_by_the_emailed_link(
    playwright_browser: Browser, dashboard: Dashboard, smtp: SmtpServer
) -> None:
    anonymous = playwright_browser.new_context(base_url=dashboard.url, viewport=PHONE)
    problems: list[str] = []
    try:
        page = anonymous.new_page()
        page.goto("/sign-in")
        page.get_by_role("link", name="Forgot your password?").click()
        check_page(page, "forgot-password", problems, width="375")
        page.get_by_label("Email").fill(dashboard.email)
        page.get_by_role("button", name="Email me a link").click()
        expect(page.get_by_role("status")).to_contain_text("If an account uses")
        mail = wait_for(lambda: smtp.messages, "the reset email")
        link = LINK.search(mail[-1].get_body().get_content())  # type: ignore[union-attr]
        assert link, mail[-1]
        page.goto(link.group(0))
        check_page(page, "reset-password", problems, width="375")
        page.get_by_label("New password (at least 8 characters)").fill("a new calm password")
        page.get_by_role("button", name="Set password").click()
        expect(page.get_by_role("status")).to_have_text("Your new password is set. Sign in with it.")
        if not no_horizontal_scroll(page)[0]:
            problems.append("sign-in after a reset scrolls sideways at 375 px")
        page.get_by_label("Email").fill(dashboard.email)
        page.get_by_label("Password").fill("a new calm password")
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_role("heading", name="Incidents", level=1)).to_be_visible()
        assert problems == []
    finally:
        anonymous.close()
        api(
            dashboard,
            "POST",
            "/api/auth/password",
            {"currentPassword": "a new calm password", "newPassword": PASSWORD},
        )
