"""The dashboard in a real browser (Playwright driving Debian's Chromium) against a real
`monoduty dev` on a database of its own: what a person on call sees and does.

One browser for all of them (this module holds the suite's browser tests), a fresh context and
page per test. It is not a session fixture: while Playwright's sync API is alive it marks the
thread's event loop as running, and the async tests after this module could not run theirs.
Each page is screenshotted at 1440 and 375 px wide into the folder the run prints at its end.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, expect

from tests.support.browser import axe_violations, no_horizontal_scroll, screenshot
from tests.support.dashboard_browser import (
    PASSWORD,
    PHONE,
    Dashboard,
    api,
    mark,
    post_alert,
    sign_in,
    still_marked,
)
from tests.support.processes import wait_for

pytestmark = pytest.mark.browser  # run with -m browser (.ci/run does)

DATA = Path(__file__).resolve().parent / "data" / "alertmanager"
XSS = "<img src=x onerror=alert(1)>"


def test_flow_from_the_dev_link_to_a_live_acknowledge_and_resolve(
    context: BrowserContext, dashboard: Dashboard
) -> None:
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=dashboard.url)
    page = context.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))

    # 1. the one-time link `monoduty dev` printed; its page asks before it signs in
    page.goto(dashboard.login_link)
    screenshot(page, "login-link")
    page.get_by_role("button", name="Sign in to Monoduty").click()
    expect(page.get_by_role("heading", name="No incidents yet")).to_be_visible()
    screenshot(page, "incidents-empty")

    # 2. a webhook through the form: one field error shown at its field, then fixed
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Webhooks").click()
    expect(page.get_by_role("heading", name="No webhooks yet")).to_be_visible()
    screenshot(page, "webhooks-empty")
    page.get_by_role("link", name="Create your first webhook").click()
    page.get_by_label("Name", exact=True).fill("Production")
    for channel in ("Email", "SMS", "Push", "Call"):
        page.get_by_role("checkbox", name=channel, exact=True).check()
    page.get_by_label("Email targets").fill("not-an-email")
    page.get_by_label("SMS targets").fill("+14155550123")
    page.get_by_label("Push targets").fill("prod-alerts")
    page.get_by_label("Call targets").fill("+14155550124")
    page.get_by_role("button", name="Create webhook").click()
    email = page.get_by_label("Email targets")
    expect(email).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#target_email-error")).to_contain_text("Email targets")
    expect(page.get_by_label("SMS targets")).to_have_value("+14155550123")  # the rest is kept
    screenshot(page, "webhook-form-error")
    email.fill("oncall@example.com")
    page.get_by_role("button", name="Create webhook").click()
    expect(page.get_by_role("heading", name="Production", level=1)).to_be_visible()

    # 3. its URL, copied with the button
    page.get_by_role("button", name="Copy URL").click()
    expect(page.get_by_role("status").first).to_have_text("Copied.")
    url = page.evaluate("() => navigator.clipboard.readText()")
    assert url == page.get_by_role("textbox", name="Webhook URL").input_value()
    assert url.startswith(dashboard.url + "/")
    expect(page.locator("#config-alertmanager")).to_contain_text(f"url: {url}")
    screenshot(page, "webhook")

    # 4. an Alertmanager group posted to it: the incident appears without a reload (how fast is
    # a figure for bench/, not a timed assertion that a loaded machine would fail)
    page.goto("/")
    expect(page.get_by_role("heading", name="All quiet")).to_be_visible()
    watcher = context.new_page()  # a second tab, open on the incident list too
    watcher.goto("/")
    mark(page)
    post_alert(url, (DATA / "01-firing.json").read_bytes())
    row = page.get_by_role("row").filter(has_text="HighErrorRate")
    expect(row).to_be_visible(timeout=5000)
    assert still_marked(page), "the page reloaded"
    expect(row).to_contain_text("Critical")  # severity in words, not only colour
    expect(row).to_contain_text("Triggered")
    expect(page).to_have_title("(1) Incidents · Monoduty")
    screenshot(page, "incidents")

    # 5. open it: its deliveries on every channel, targets masked
    watcher.get_by_role("link", name="HighErrorRate").first.click()
    expect(watcher.get_by_role("heading", level=1)).to_contain_text("HighErrorRate")
    timeline = watcher.locator(".timeline")
    for channel in ("Email to", "SMS to", "Push to", "Call to"):
        expect(timeline).to_contain_text(channel)
    expect(timeline).to_contain_text("o•••@example.com")
    expect(timeline).not_to_contain_text("oncall@example.com")
    mark(watcher)

    # 6. acknowledge on the first tab: the second (open, not reloaded) shows it
    row.get_by_role("button", name="Acknowledge").click()
    expect(page.get_by_role("row").filter(has_text="HighErrorRate")).to_contain_text("Acknowledged")
    expect(watcher.locator(".incident-head")).to_contain_text("Acknowledged", timeout=2000)
    expect(watcher.locator(".facts")).to_contain_text("by Admin")
    assert still_marked(watcher), "the second tab reloaded"
    expect(page).to_have_title("Incidents · Monoduty")
    screenshot(watcher, "incident-acknowledged")

    # 7. resolve from the incident page; the list (live) lets it go
    mark(page)
    watcher.get_by_role("button", name="Resolve").click()
    expect(watcher.locator(".incident-head")).to_contain_text("Resolved")
    expect(page.get_by_role("heading", name="All quiet")).to_be_visible(timeout=2000)
    assert still_marked(page)
    assert dialogs == []

    # the later tests sign in with a password
    api(dashboard, "POST", "/api/auth/password", {"newPassword": PASSWORD})


def test_a_senders_markup_is_text_and_runs_nothing(context: BrowserContext, dashboard: Dashboard) -> None:
    hook = api(
        dashboard,
        "POST",
        "/api/webhooks",
        {"name": "Markup", "notificationTypes": ["PUSH_NOTIF"], "targetChannels": {"push": "markup-test"}},
    )["webhook"]
    page = sign_in(context, dashboard)
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    post_alert(
        hook["webhook_url"], json.dumps({"title": XSS, "message": "<script>alert(2)</script>"}).encode()
    )
    link = page.get_by_role("link", name=XSS)
    expect(link).to_be_visible(timeout=2000)
    assert page.locator("main img").count() == 0
    link.click()
    expect(page.get_by_role("heading", level=1)).to_contain_text(XSS)
    expect(page.locator(".message").first).to_have_text("<script>alert(2)</script>")
    assert page.locator("main img").count() == 0
    page.locator("details.alert summary").first.click()
    expect(page.locator(".payload").first).to_contain_text("onerror")
    assert dialogs == []


PAGES = ["/", "/?status=all", "/webhooks", "/webhooks/new"]


def a_webhook(dashboard: Dashboard) -> dict[str, Any]:
    """The first user's first webhook (made here when the tests before did not run)."""
    hooks = api(dashboard, "GET", "/api/webhooks")["webhooks"]
    if hooks:
        return hooks[0]
    body = {"name": "Pages", "notificationTypes": ["EMAIL"]}
    return api(dashboard, "POST", "/api/webhooks", body)["webhook"]


def incidents(dashboard: Dashboard) -> list[dict[str, Any]]:
    return api(dashboard, "GET", "/api/incidents?status=all")["incidents"]


def incident_titled(dashboard: Dashboard, title: str) -> dict[str, Any]:
    found = wait_for(lambda: [i for i in incidents(dashboard) if i["title"] == title], f"incident {title}")
    return found[0]


def pages_to_check(dashboard: Dashboard, hook: dict[str, Any], title: str) -> list[tuple[str, str]]:
    """(name, path) of every signed-in page, with the incident titled ``title`` for its page."""
    return [
        ("incidents", "/?status=all"),
        ("incident", f"/incidents/{incident_titled(dashboard, title)['id']}"),
        ("webhooks", "/webhooks"),
        ("webhook", f"/webhooks/{hook['id']}"),
        ("webhook-new", "/webhooks/new"),
        ("maintenance", "/maintenance"),
    ]


def quiet_things(dashboard: Dashboard, hook: dict[str, Any]) -> None:
    """A heartbeat on ``hook`` (its webhook page's section), and a maintenance window and a silence
    on a webhook of their own (so that no page of the other tests is held)."""
    if not api(dashboard, "GET", f"/api/webhooks/{hook['id']}/heartbeats")["heartbeats"]:
        beat = {"name": "Nightly backup of the billing database", "period": "1d", "grace": "30m"}
        api(dashboard, "POST", f"/api/webhooks/{hook['id']}/heartbeats", beat)
    quiet = api(dashboard, "POST", "/api/webhooks", {"name": "Staging", "notificationTypes": ["EMAIL"]})
    webhook_id = quiet["webhook"]["id"]
    window = {"webhookId": webhook_id, "duration": "2h", "reason": "Upgrading PostgreSQL 15 to 16 on db-1"}
    api(dashboard, "POST", "/api/maintenance-windows", window)
    matchers = [{"name": "source", "value": "staging-.*", "isRegex": True}]
    silence = {"webhookId": webhook_id, "matchers": matchers, "duration": "1h", "comment": "staging rebuilt"}
    api(dashboard, "POST", "/api/silences", silence)


def test_every_page_fits_a_phone_and_passes_axe(
    playwright_browser: Browser, context: BrowserContext, dashboard: Dashboard
) -> None:
    hook = a_webhook(dashboard)
    quiet_things(dashboard, hook)
    title = "Replica lag above 30 s on db-2, reads may be stale for customers in eu-west"
    post_alert(hook["webhook_url"], json.dumps({"title": title, "severity": "warning"}).encode())
    wide = sign_in(context, dashboard)
    phone_context = playwright_browser.new_context(
        base_url=dashboard.url, viewport=PHONE, storage_state=context.storage_state()
    )
    try:
        phone = phone_context.new_page()
        problems: list[str] = []
        for name, path in pages_to_check(dashboard, hook, title):
            for page, width in ((wide, "1440"), (phone, "375")):
                page.goto(path)
                expect(page.locator("main h1").first).to_be_visible()
                screenshot(page, f"{name}-{width}")
                if width == "375":
                    fits, scroll, inner = no_horizontal_scroll(page)
                    if not fits:
                        problems.append(f"{name} at 375 px scrolls sideways ({scroll} > {inner})")
                problems += [f"{name} at {width} px: axe {v}" for v in axe_violations(page)]
        anonymous = playwright_browser.new_context(base_url=dashboard.url, viewport=PHONE)
        try:
            page = anonymous.new_page()
            page.goto("/sign-in")
            screenshot(page, "sign-in-375")
            problems += [f"sign-in: axe {v}" for v in axe_violations(page)]
            if not no_horizontal_scroll(page)[0]:
                problems.append("sign-in at 375 px scrolls sideways")
        finally:
            anonymous.close()
        assert problems == []
    finally:
        phone_context.close()


def test_signing_out_in_another_tab_sends_the_next_action_to_sign_in(
    context: BrowserContext, dashboard: Dashboard
) -> None:
    post_alert(
        a_webhook(dashboard)["webhook_url"], b'{"title": "Queue backlog growing", "severity": "error"}'
    )
    page = sign_in(context, dashboard)
    row = page.get_by_role("row").filter(has_text="Queue backlog growing")
    expect(row).to_be_visible(timeout=2000)
    other = context.new_page()
    other.goto("/")
    other.get_by_role("button", name="Sign out").click()
    expect(other.get_by_role("heading", name="Sign in")).to_be_visible()

    row.get_by_role("button", name="Acknowledge").click()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    expect(page.get_by_role("status")).to_contain_text("Your session has ended")
    assert incident_titled(dashboard, "Queue backlog growing")["status"] == "triggered"
    # signing in again goes back to the page it was on
    page.get_by_label("Email").fill(dashboard.email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("row").filter(has_text="Queue backlog growing")).to_be_visible()
