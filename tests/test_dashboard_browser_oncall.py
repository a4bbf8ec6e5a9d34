"""The On-call and Team pages in a real browser (Playwright driving Debian's Chromium) against a
real `monoduty dev` of their own (the fixtures of tests/test_dashboard_browser.py, one dev server
for this module): browser flow 2 of the dashboard, keyboard use, axe-core and the phone width.

The browser runs in Europe/Berlin (the viewer's zone, not the server's nor the schedule's): the
pages show and read times in it.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from tests.support.browser import axe_violations, no_horizontal_scroll, screenshot
from tests.support.dashboard_browser import PHONE, WIDE, Dashboard, api

pytestmark = pytest.mark.browser  # run with -m browser (.ci/run does)

VIEWER_ZONE = "Europe/Berlin"
LOCAL = "%Y-%m-%dT%H:%M"
FOCUSED = """() => {
  const focused = document.activeElement;
  return (focused.labels?.[0]?.textContent ?? focused.textContent).trim().replace(/\\s+/g, " ");
}"""


@pytest.fixture(scope="module")
def signed_in(playwright_browser: Browser, dashboard: Dashboard) -> dict[str, Any]:
    """The first user's session, signed in once with the one-time link `monoduty dev` printed."""
    context = playwright_browser.new_context(base_url=dashboard.url)
    try:
        page = context.new_page()
        page.goto(dashboard.login_link)
        page.get_by_role("button", name="Sign in to Monoduty").click()
        expect(page.get_by_role("heading", name="Incidents", level=1)).to_be_visible()
        return context.storage_state()
    finally:
        context.close()


def new_context(
    browser: Browser, dashboard: Dashboard, state: dict[str, Any], viewport: dict[str, int]
) -> BrowserContext:
    context = browser.new_context(
        base_url=dashboard.url,
        viewport=viewport,
        storage_state=state,
        timezone_id=VIEWER_ZONE,  # type: ignore[arg-type]
    )
    context.set_default_timeout(5000)
    return context


@pytest.fixture
def wide(
    playwright_browser: Browser, dashboard: Dashboard, signed_in: dict[str, Any]
) -> Iterator[BrowserContext]:
    context = new_context(playwright_browser, dashboard, signed_in, WIDE)
    yield context
    context.close()


def berlin(moment: datetime) -> str:
    return moment.astimezone(ZoneInfo(VIEWER_ZONE)).strftime(LOCAL)


def now_card(page: Page, schedule: str) -> Any:
    return page.get_by_role("group", name=f"On call now for {schedule}")


def test_flow_a_schedule_of_two_with_an_override_puts_the_override_on_call(
    wide: BrowserContext,
    dashboard: Dashboard,
) -> None:
    page = wide.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.goto("/")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="On-call").click()
    expect(page.get_by_role("heading", name="No schedules yet")).to_be_visible()
    expect(page.get_by_label("Times shown in")).to_have_value(VIEWER_ZONE)  # the browser's zone
    screenshot(page, "oncall-empty")

    # a team of two: the second person invited by email through the Team page
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Team").click()
    expect(page.get_by_role("heading", name="Just you here")).to_be_visible()
    screenshot(page, "team-empty")
    page.get_by_text("Create another team").click()
    page.get_by_label("Team name").fill("Platform")
    page.get_by_role("button", name="Create team").click()
    expect(page.get_by_role("heading", name="Team: Platform")).to_be_visible()
    page.get_by_label("Email", exact=True).fill("bob@example.com")
    page.get_by_label("Name (optional)").fill("Bob Oncall")
    page.get_by_label("Role", exact=True).select_option("responder")
    page.get_by_role("button", name="Invite", exact=True).click()
    expect(page.get_by_role("heading", name="bob@example.com is invited")).to_be_visible()
    assert (
        "/invite/mdi_"
        in page.get_by_role("textbox", name="Set-password link for bob@example.com").input_value()
    )
    expect(page.get_by_role("row").filter(has_text="Bob Oncall")).to_contain_text("Responder")
    screenshot(page, "team")

    # a schedule with a weekly rotation of the two, through the form: one field error first
    page.get_by_role("navigation", name="Main").get_by_role("link", name="On-call").click()
    page.get_by_role("link", name="Create your first schedule").click()
    page.get_by_label("Name", exact=True).fill("Platform primary")
    page.get_by_label("Time zone of the schedule").select_option("America/New_York")
    page.get_by_label("Rotation name (optional)").fill("Weekly")
    page.get_by_role("checkbox", name="Admin").check()
    page.get_by_role("checkbox", name="Bob Oncall").check()
    page.get_by_label("Shift length").fill("0")
    page.get_by_label("Unit").select_option("weeks")
    yesterday = datetime.now(ZoneInfo("America/New_York")) - timedelta(days=1)
    page.get_by_label("First handoff (in the schedule's time zone)").fill(yesterday.strftime(LOCAL))
    page.get_by_role("button", name="Create schedule").click()
    length = page.get_by_label("Shift length")
    expect(length).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#shift_length-error")).to_contain_text("Shift length must be a whole number")
    expect(page.get_by_role("checkbox", name="Bob Oncall")).to_be_checked()  # the rest is kept
    screenshot(page, "schedule-form-error")
    length.fill("1")
    page.get_by_role("button", name="Create schedule").click()
    expect(page.get_by_role("heading", name="Platform primary", level=2)).to_be_visible()
    card = now_card(page, "Platform primary")
    expect(card).to_contain_text("Admin")  # the rotation's first week: its first person
    expect(card).not_to_contain_text("Override")

    # an override for Bob, from now for eight hours, typed in the viewer's (Berlin) time
    start = datetime.now(ZoneInfo(VIEWER_ZONE)).replace(second=0, microsecond=0) - timedelta(minutes=1)
    form = page.get_by_role("form", name="Add an override")
    form.get_by_label("Person").select_option(label="Bob Oncall")
    form.get_by_label("From").fill(berlin(start))
    form.get_by_label("Until").fill(berlin(start + timedelta(hours=8)))
    form.get_by_role("button", name="Add override").click()
    expect(card).to_contain_text("Bob Oncall")
    expect(card).to_contain_text("Override")
    end_text = (start + timedelta(hours=8)).strftime("%H:%M")
    expect(card).to_contain_text("Next handoff")
    expect(card).to_contain_text(end_text)  # the override's end, on the viewer's clock
    expect(card).to_contain_text("to Admin")
    lane = page.locator(".lane-override")
    expect(lane.locator(".bar-override")).to_have_count(1)
    page.get_by_text("Shifts as a list").click()
    expect(page.locator("tr.row-override")).to_contain_text("Bob Oncall")
    screenshot(page, "oncall")

    # the JSON API agrees: who is on call now
    schedules = api(dashboard, "GET", "/api/schedules")["schedules"]
    schedule = next(s for s in schedules if s["name"] == "Platform primary")
    on_call = api(dashboard, "GET", f"/api/schedules/{schedule['id']}/on-call")["on_call"]
    assert [o["user"]["email"] for o in on_call] == ["bob@example.com"]
    assert dialogs == []


def test_the_policy_editor_by_keyboard(wide: BrowserContext, dashboard: Dashboard) -> None:
    page = wide.new_page()
    page.goto("/on-call/policies/new")
    expect(page.get_by_role("heading", name="New escalation policy")).to_be_visible()
    page.get_by_label("Name", exact=True).focus()
    page.keyboard.type("Production")
    # every control is reached with Tab, in order, and shows where the focus is
    seen = []
    for _ in range(40):
        page.keyboard.press("Tab")
        seen.append(page.evaluate(FOCUSED))
        outline = page.evaluate("() => getComputedStyle(document.activeElement).outlineStyle")
        assert outline != "none", f"no visible focus on {seen[-1]}"
        if seen[-1] == "Create policy":
            break
    assert "Description (optional)" in seen and "Add a step" in seen and "Create policy" in seen
    assert seen.index("Then wait (minutes) for an acknowledgement before the next step") < seen.index(
        "Add a step"
    )
    page.keyboard.press("Enter")  # the create button, by keyboard: step 1 pages nobody yet
    expect(page.get_by_role("alert")).to_contain_text("Step 1: Who")
    screenshot(page, "policy-form-error")
    page.get_by_role("checkbox", name="Admin").first.check()
    page.get_by_role("button", name="Create policy").click()
    expect(page.get_by_role("status")).to_contain_text("Saved.")
    expect(page.get_by_role("heading", name="Escalation policy: Production")).to_be_visible()
    screenshot(page, "policy")


def test_the_new_pages_fit_a_phone_and_pass_axe(
    playwright_browser: Browser,
    dashboard: Dashboard,
    signed_in: dict[str, Any],
) -> None:
    # A schedule of two layers (weekly, and business hours on top) and a policy, through the API:
    # the pages are checked full, whichever tests ran before.
    me = api(dashboard, "GET", "/api/auth/me")["user"]["id"]
    weekly = {"participants": [me], "shiftLength": 1, "shiftUnit": "weeks", "start": "2026-01-05T09:00"}
    business = {
        **weekly,
        "name": "Business hours",
        "shiftUnit": "days",
        "activeHours": {"weekdays": [0, 1, 2, 3, 4], "start": "09:00", "end": "17:00"},
    }
    body = {"name": "Support", "timeZone": "Europe/London", "rotations": [weekly, business]}
    support = api(dashboard, "POST", "/api/schedules", body)["schedule"]
    step = {"delayMinutes": 10, "targets": [{"type": "schedule", "id": support["id"]}]}
    api(dashboard, "POST", "/api/escalation-policies", {"name": "Support", "steps": [step], "repeat": 2})
    policies = api(dashboard, "GET", "/api/escalation-policies")["escalation_policies"]
    teams = api(dashboard, "GET", "/api/teams")["teams"]
    members = api(dashboard, "GET", f"/api/teams/{teams[-1]['id']}/members")["members"]
    other = next((m for m in members if m["email"] != dashboard.email), None)
    pages = [
        ("oncall", "/on-call"),
        ("oncall-two-weeks", "/on-call?days=14"),
        ("schedule-new", "/on-call/new-schedule"),
        ("policy-new", "/on-call/policies/new"),
        ("team", "/team"),
        ("layer-new", f"/on-call/schedules/{support['id']}/layers"),
        ("schedule-delete", f"/on-call/schedules/{support['id']}/delete"),
    ]
    if policies:
        pages.append(("policy", f"/on-call/policies/{policies[0]['id']}"))
    if other:
        pages.append(("team-remove", f"/team/{teams[-1]['id']}/members/{other['user_id']}/remove"))
    problems: list[str] = []
    for viewport, width in ((WIDE, "1440"), (PHONE, "375")):
        context = new_context(playwright_browser, dashboard, signed_in, viewport)
        try:
            page = context.new_page()
            for name, path in pages:
                page.goto(path)
                expect(page.locator("main h1").first).to_be_visible()
                for summary in page.locator("main details summary").all():
                    summary.click()  # what is folded away is checked too
                screenshot(page, f"{name}-{width}")
                if width == "375":
                    fits, scroll, inner = no_horizontal_scroll(page)
                    if not fits:
                        problems.append(f"{name} at 375 px scrolls sideways ({scroll} > {inner})")
                problems += [f"{name} at {width} px: axe {v}" for v in axe_violations(page)]
        finally:
            context.close()
    assert problems == []
