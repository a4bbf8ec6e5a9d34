"""The profile, inbox, reports, status and outbox pages in a real browser (Playwright driving
Debian's Chromium) against a real `monoduty dev` of their own: browser flow 3 of issue 14 (the
inbox badge counts and clears; a CSV report downloads with its header row), the dev user's first
password, a phone verified with the code read off the outbox, an API key shown once, quiet hours
set on a phone in its own time zone, and axe-core and a 375 px phone on every one of these pages.

The fixtures are tests/test_dashboard_browser.py's (one dev server and one browser per module).
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import replace
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Locator, Page, expect

from engine.reports import render_csv
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

pytestmark = pytest.mark.browser  # run with -m browser (.ci/run does)

PAGES = [
    ("profile", "/profile"),
    ("inbox", "/inbox"),
    ("reports", "/reports"),
    ("status", "/status"),
    ("outbox", "/outbox"),
]


def nav(page: Page, name: str) -> None:
    page.get_by_role("navigation", name="Main").get_by_role("link", name=name).click()


def badge(page: Page) -> Locator:
    return page.locator("#inbox-badge")


def test_the_dev_user_sets_a_password_then_the_inbox_badge_counts_and_clears(
    context: BrowserContext, dashboard: Dashboard, tmp_path: Path
) -> None:
    page = context.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.goto(dashboard.login_link)
    page.get_by_role("button", name="Sign in to Monoduty").click()
    expect(page.get_by_role("heading", name="Incidents", level=1)).to_be_visible()

    # the one-time link's user has no password: the profile sets the first one
    nav(page, "Profile")
    expect(page.get_by_role("heading", name="Set a password")).to_be_visible()
    screenshot(page, "profile-first")
    page.get_by_label("New password", exact=True).fill(PASSWORD)
    page.get_by_label("New password again").fill("not the same one")
    page.get_by_role("button", name="Set password").click()
    expect(page.locator("#password-error")).to_have_text("The two new passwords differ.")
    page.get_by_label("New password", exact=True).fill(PASSWORD)
    page.get_by_label("New password again").fill(PASSWORD)
    page.get_by_role("button", name="Set password").click()
    expect(page.get_by_role("status").first).to_contain_text("Password saved")
    expect(page.get_by_role("heading", name="Change password")).to_be_visible()

    # the inbox starts empty, saying what to do; alerts arrive and the badge counts them, live
    nav(page, "Inbox")
    expect(page.get_by_role("heading", name="No notifications yet")).to_be_visible()
    expect(badge(page)).to_have_text("")
    hook = api(dashboard, "POST", "/api/webhooks", {"name": "Inbox", "notificationTypes": ["EMAIL"]})[
        "webhook"
    ]
    mark(page)
    for n in range(3):
        post_alert(
            hook["webhook_url"], json.dumps({"title": f"Disk {n} almost full", "dedupKey": f"d{n}"}).encode()
        )
    expect(badge(page)).to_have_text("3 unread", timeout=5000)
    expect(page.locator(".note-item.unread")).to_have_count(3)
    assert still_marked(page), "the page reloaded"
    screenshot(page, "inbox")

    # on any other page too
    nav(page, "Reports")
    expect(badge(page)).to_have_text("3 unread")

    # mark one read, then all
    nav(page, "Inbox")
    page.locator(".note-item").filter(has_text="Disk 0 almost full").get_by_role(
        "button", name="Mark read"
    ).click()
    expect(badge(page)).to_have_text("2 unread")
    expect(page.locator(".note-item.unread")).to_have_count(2)
    page.get_by_role("button", name="Mark all read").click()
    expect(page.get_by_text("Everything is read.")).to_be_visible()
    expect(badge(page)).to_have_text("")
    expect(page.locator(".note-item.unread")).to_have_count(0)
    assert api(dashboard, "GET", "/api/notifications/unread-count")["unread_count"] == 0

    # a CSV report of the range, downloaded through the form
    nav(page, "Reports")
    page.get_by_label("Incidents report").check()
    page.get_by_label("Format").select_option("csv")
    with page.expect_download() as started:
        page.get_by_role("button", name="Download").click()
    download = started.value
    assert re.fullmatch(
        r"monoduty-incidents-\d{4}-\d\d-\d\d-to-\d{4}-\d\d-\d\d\.csv", download.suggested_filename
    )
    saved = tmp_path / download.suggested_filename
    download.save_as(saved)
    with saved.open(newline="") as f:
        rows = list(csv.reader(f))
    assert tuple(rows[0]) == render_csv.INCIDENTS
    titles = sorted(row[rows[0].index("title")] for row in rows[1:])
    assert titles == ["Disk 0 almost full", "Disk 1 almost full", "Disk 2 almost full"], rows

    # the chart shows the day's calls and incidents
    page.get_by_role("button", name="Show the chart for this range").click()
    expect(page.locator("svg.chart rect")).to_have_count(2)
    expect(page.locator(".facts")).to_contain_text("3")
    screenshot(page, "reports")
    assert dialogs == []


def test_a_phone_is_verified_with_the_code_from_the_outbox_and_an_api_key_is_shown_once(
    context: BrowserContext, dashboard: Dashboard
) -> None:
    page = sign_in(context, dashboard)
    nav(page, "Profile")
    page.get_by_label("Type").select_option("SMS")
    page.get_by_label("Target").fill("+14155550199")
    page.get_by_role("button", name="Add contact method").click()
    expect(page.get_by_role("status").first).to_have_text("Contact method added.")
    method = page.locator(".methods > li").filter(has_text="+14155550199")
    expect(method).to_contain_text("Not verified: not paged")
    method.get_by_role("button", name="Send a code").click()
    expect(page.get_by_role("status").first).to_contain_text("A code is on its way")

    outbox = context.new_page()
    outbox.goto("/outbox")
    entry = outbox.locator(".outbox-entry").filter(has_text="verification code").first
    expect(entry).to_be_visible()
    code = re.search(r"\b(\d{6})\b", entry.inner_text())
    assert code
    # the outbox is live: a page for a new alert shows up without a reload
    mark(outbox)
    hook = api(dashboard, "POST", "/api/webhooks", {"name": "Outbox", "notificationTypes": ["EMAIL"]})[
        "webhook"
    ]
    post_alert(hook["webhook_url"], b'{"title": "Outbox shows this live", "severity": "warning"}')
    expect(outbox.locator(".outbox-entry").first).to_contain_text("Outbox shows this live", timeout=8000)
    assert still_marked(outbox), "the outbox reloaded"

    page.get_by_label("Code sent to +14155550199").fill(code.group(1))
    page.get_by_role("button", name="Verify").click()
    expect(page.get_by_role("status").first).to_contain_text("Number verified")
    expect(page.locator(".methods > li").filter(has_text="+14155550199").first).to_contain_text("Verified")

    # a rule for it, after 2 minutes
    page.get_by_label("Contact method", exact=True).select_option(label="SMS to +14155550199")
    page.get_by_label("Minutes after the page starts").fill("2")
    page.get_by_role("button", name="Add rule").click()
    expect(page.locator("table.rules")).to_contain_text("2 min")

    # an API key: its secret on this answer only, and it works
    page.get_by_label("Key name").fill("browser test")
    page.get_by_role("button", name="Create API key").click()
    secret = page.get_by_role("textbox", name="New API key").input_value()
    assert secret.startswith("md_")
    me = api(replace(dashboard, key=secret), "GET", "/api/auth/me")
    assert me["user"]["email"] == dashboard.email
    screenshot(page, "profile-new-key")
    page.goto("/profile")
    assert secret not in page.content()
    page.get_by_text("Revoke browser test…").click()  # a second step, naming what stops working
    revoke = page.get_by_role("button", name='Revoke "browser test": scripts using it stop working')
    expect(revoke).to_be_visible()
    page.keyboard.press("Escape")  # changed one's mind: Escape closes it, nothing done
    expect(revoke).to_be_hidden()
    page.get_by_text("Revoke browser test…").click()
    page.get_by_role("button", name='Revoke "browser test": scripts using it stop working').click()
    expect(page.get_by_role("status").first).to_contain_text("API key revoked")
    outbox.close()


def test_quiet_hours_are_set_on_a_phone_in_the_browsers_zone_and_listed(
    playwright_browser: Browser, dashboard: Dashboard
) -> None:
    # a browser of its own, on a phone, far from UTC and never here before: the sign-in page
    # already learns its zone, so the form offers it
    phone_context = playwright_browser.new_context(
        base_url=dashboard.url, viewport=PHONE, timezone_id="Pacific/Auckland"
    )
    phone_context.set_default_timeout(5000)
    try:
        page = sign_in(phone_context, dashboard)
        page.goto("/profile#quiet-hours")
        quiet = page.locator("#quiet-hours")
        expect(quiet.get_by_role("heading", name="No quiet hours")).to_be_visible()
        expect(page.get_by_label("Time zone (your browser's)")).to_have_value("Pacific/Auckland")

        # the engine's error, next to its field; then fixed
        page.get_by_label("Start", exact=True).fill("23:00")
        page.get_by_label("End", exact=True).fill("23:00")
        page.get_by_role("button", name="Set quiet hours").click()
        expect(page.locator("#quiet_end-error")).to_contain_text("End must differ from start")
        expect(page.get_by_label("End", exact=True)).to_have_attribute("aria-invalid", "true")
        page.get_by_label("End", exact=True).fill("06:30")
        page.get_by_label("Still page me for").select_option(label="Error and critical")
        page.get_by_role("button", name="Set quiet hours").click()
        expect(page.get_by_role("status").first).to_have_text("Quiet hours saved.")
        listed = page.locator("#quiet-hours .quiet-facts")
        expect(listed).to_contain_text("from 23:00 to 06:30, Pacific/Auckland time")
        expect(listed).to_contain_text("error and critical")
        saved = api(dashboard, "GET", "/api/me/quiet-hours")["quiet_hours"]
        assert (saved["start"], saved["end"], saved["time_zone"], saved["min_severity"]) == (
            "23:00",
            "06:30",
            "Pacific/Auckland",
            "error",
        )

        page.locator("details").evaluate_all("(all) => all.forEach((d) => d.open = true)")
        screenshot(page, "profile-quiet-hours-375")
        fits, scroll, inner = no_horizontal_scroll(page)
        assert fits, f"the profile at 375 px scrolls sideways ({scroll} > {inner})"
        assert axe_violations(page) == []

        # removed after the second step
        page.goto("/profile#quiet-hours")
        page.get_by_text("Remove quiet hours…").click()
        page.get_by_role("button", name="Remove quiet hours: what they hold back pages you now").click()
        expect(page.get_by_role("status").first).to_contain_text("Quiet hours removed")
        expect(quiet.get_by_role("heading", name="No quiet hours")).to_be_visible()
        assert api(dashboard, "GET", "/api/me/quiet-hours")["quiet_hours"] is None
    finally:
        phone_context.close()


def test_on_a_phone_the_navigation_folds_behind_menu_with_the_inbox_in_sight(
    playwright_browser: Browser, context: BrowserContext, dashboard: Dashboard
) -> None:
    wide = sign_in(context, dashboard)
    expect(wide.get_by_role("button", name="Menu")).to_be_hidden()  # a wide screen shows it all
    expect(wide.get_by_role("navigation", name="Main").get_by_role("link", name="Reports")).to_be_visible()
    phone_context = playwright_browser.new_context(
        base_url=dashboard.url, viewport=PHONE, storage_state=context.storage_state()
    )
    phone_context.set_default_timeout(5000)
    try:
        page = phone_context.new_page()
        page.goto("/")
        main_nav = page.get_by_role("navigation", name="Main")
        menu = page.get_by_role("button", name="Menu")
        expect(menu).to_have_attribute("aria-expanded", "false")
        expect(main_nav.get_by_role("link", name=re.compile(r"^Inbox"))).to_be_visible()
        expect(main_nav.get_by_role("link", name="Reports")).to_be_hidden()
        header = page.locator(".sidebar").bounding_box()
        assert header and header["height"] < 80, header  # one bar, the page's content right below

        menu.click()
        expect(menu).to_have_attribute("aria-expanded", "true")
        page.keyboard.press("Escape")  # folds it again, focus back on the button
        expect(main_nav.get_by_role("link", name="Reports")).to_be_hidden()
        expect(menu).to_be_focused()
        menu.click()
        screenshot(page, "navigation-open-375")
        main_nav.get_by_role("link", name="Reports").click()
        expect(page.get_by_role("heading", name="Reports", level=1)).to_be_visible()
        expect(page.get_by_role("button", name="Menu")).to_have_attribute("aria-expanded", "false")
        assert axe_violations(page) == []
    finally:
        phone_context.close()


def test_the_new_pages_fit_a_phone_and_pass_axe(
    playwright_browser: Browser, context: BrowserContext, dashboard: Dashboard
) -> None:
    wide = sign_in(context, dashboard)
    phone_context = playwright_browser.new_context(
        base_url=dashboard.url, viewport=PHONE, storage_state=context.storage_state()
    )
    try:
        phone = phone_context.new_page()
        problems: list[str] = []
        for name, path in PAGES:
            for page, width in ((wide, "1440"), (phone, "375")):
                page.goto(path)
                expect(page.locator("main h1").first).to_be_visible()
                page.locator("details").evaluate_all("(all) => all.forEach((d) => d.open = true)")
                screenshot(page, f"{name}-{width}")
                if width == "375":
                    fits, scroll, inner = no_horizontal_scroll(page)
                    if not fits:
                        problems.append(f"{name} at 375 px scrolls sideways ({scroll} > {inner})")
                problems += [f"{name} at {width} px: axe {v}" for v in axe_violations(page)]
                unlabelled = page.evaluate(
                    """() => [...document.querySelectorAll(
                            'main input:not([type=hidden]):not([hidden]), main select, main textarea')]
                        .filter((el) => !(el.labels && el.labels.length) && !el.getAttribute('aria-label'))
                        .map((el) => el.id || el.name)"""
                )
                if unlabelled:
                    problems.append(f"{name}: unlabelled controls {unlabelled}")
        assert problems == []
    finally:
        phone_context.close()


def test_every_form_on_the_new_pages_posts_with_the_csrf_token(
    context: BrowserContext, dashboard: Dashboard
) -> None:
    page = sign_in(context, dashboard)
    for _, path in PAGES:
        page.goto(path)
        forms = page.evaluate(
            """() => [...document.querySelectorAll('main form')].map((f) => ({
                method: (f.getAttribute('method') || 'get').toLowerCase(),
                action: f.getAttribute('action'),
                csrf: !!f.querySelector('input[name=csrf_token]'),
            }))"""
        )
        for form in forms:
            if form["action"] == "/reports/download":
                continue  # a download reads, it changes nothing
            assert form["method"] == "post" and form["csrf"], (path, form)
