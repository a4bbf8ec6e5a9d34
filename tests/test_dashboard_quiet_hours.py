"""Quiet hours on the profile page over HTTP (the browser check is in
tests/test_dashboard_browser_profile.py): set, changed and removed through the engine functions
``/api/me/quiet-hours`` calls, so the API answers what the form saved; the form's time zone is the
browser's (the ``monoduty_tz`` cookie) until quiet hours are set; the engine's errors are shown
at their fields with what was typed kept; every change a POST with the CSRF token."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient
from arq.connections import ArqRedis

from engine.settings import Settings
from tests.support.clock import ManualClock
from tests.support.factories import make_client
from tests.support.html_text import field_error, text_of
from tests.support.sessions import log_in, web_user

NOW = datetime(2026, 3, 10, 15, 0, tzinfo=UTC)  # 11:00 in New York (UTC-4 since 8 March)
NEW_YORK = {"monoduty_tz": "America/New_York"}
NIGHT = {"quiet_start": "22:00", "quiet_end": "07:00", "quiet_time_zone": "America/New_York"}


@pytest.fixture
async def clocked(settings: Settings, redis: ArqRedis) -> AsyncIterator[TestClient]:
    client = await make_client(settings, clock=ManualClock(NOW))
    yield client
    await client.close()


async def saved(client: TestClient) -> dict[str, Any] | None:
    """What ``GET /api/me/quiet-hours`` answers the same signed-in caller."""
    resp = await client.get("/api/me/quiet-hours")
    assert resp.status == 200, await resp.text()
    return (await resp.json())["quiet_hours"]


def section(html: str) -> str:
    """The words of the page's quiet hours section."""
    match = re.search(r'<section class="panel" id="quiet-hours".*?</section>', html, flags=re.S)
    assert match, html
    return re.sub(r" ([,.])", r"\1", text_of(match.group(0)))


def chosen_zone(html: str) -> str:
    match = re.search(r'<select id="quiet_time_zone".*?<option selected>([^<]+)</option>', html, flags=re.S)
    assert match, "no zone chosen"
    return match.group(1)


async def test_quiet_hours_are_set_changed_and_removed_from_the_profile_as_the_api_sees_them(
    clocked: TestClient, pool: asyncpg.Pool
) -> None:
    csrf = await log_in(clocked, await web_user(pool))
    clocked.session.cookie_jar.update_cookies(NEW_YORK)
    page = await (await clocked.get("/profile")).text()
    assert "No quiet hours" in section(page) and "Every page reaches you at any hour" in section(page)
    assert chosen_zone(page) == "America/New_York"  # the browser's zone, before any are set
    assert "Time zone (your browser's)" in section(page)
    assert 'value="22:00"' in page and 'value="07:00"' in page
    assert 'data-zone-source="default"' not in page  # the zone is known: no redraw

    resp = await clocked.post(
        "/profile/quiet-hours",
        data={"csrf_token": csrf, **NIGHT, "quiet_min_severity": "critical"},
        allow_redirects=False,
    )
    assert resp.status == 303 and resp.headers["Location"] == "/profile?done=quiet-set#quiet-hours"
    api = await saved(clocked)
    assert api is not None
    assert (api["start"], api["end"], api["time_zone"], api["min_severity"], api["quiet_until"]) == (
        "22:00",
        "07:00",
        "America/New_York",
        "critical",
        None,
    )
    page = await (await clocked.get("/profile?done=quiet-set")).text()
    words = section(page)
    assert "Every night from 22:00 to 07:00, America/New_York time" in words
    assert "Still paged critical incidents only" in words
    assert "not quiet: every page reaches you" in words
    assert "Quiet hours saved." in text_of(page)

    # changed: the form comes filled in with theirs, the zone too, whatever the browser's is now
    clocked.session.cookie_jar.update_cookies({"monoduty_tz": "Asia/Tokyo"})
    page = await (await clocked.get("/profile")).text()
    assert chosen_zone(page) == "America/New_York"  # theirs, not the browser's, once set
    assert "(your browser's)" not in section(page)
    resp = await clocked.post(
        "/profile/quiet-hours",
        data={
            "csrf_token": csrf,
            "quiet_start": "10:00",
            "quiet_end": "12:30",
            "quiet_time_zone": "America/New_York",
            "quiet_min_severity": "error",
        },
        allow_redirects=False,
    )
    assert resp.status == 303
    api = await saved(clocked)
    assert api is not None
    assert (api["start"], api["end"], api["min_severity"]) == ("10:00", "12:30", "error")
    assert api["quiet_until"] == "2026-03-10T16:30:00.000Z"  # 12:30 in New York
    words = section(await (await clocked.get("/profile")).text())
    assert "Still paged error and critical" in words
    assert "Quiet until 12:30 (in 1 h 30 min)" in words

    # removed, after a second step; removing what is gone says so, at the section
    resp = await clocked.post("/profile/quiet-hours/delete", data={"csrf_token": csrf}, allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"] == "/profile?done=quiet-removed#quiet-hours"
    assert await saved(clocked) is None
    page = await (await clocked.get("/profile?done=quiet-removed")).text()
    assert "No quiet hours" in section(page) and "Quiet hours removed" in text_of(page)
    assert chosen_zone(page) == "Asia/Tokyo"  # none set: the browser's zone again
    again = await clocked.post("/profile/quiet-hours/delete", data={"csrf_token": csrf})
    assert again.status == 404
    assert "You have no quiet hours" in section(await again.text())


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("quiet_start", "25:00", "Start must be a time of day HH:MM from 00:00 to 23:59"),
        ("quiet_start", "", "Start must be a time of day HH:MM"),
        ("quiet_end", "22:00", "End must differ from start"),
        ("quiet_time_zone", "Mars/Olympus_Mons", "Time zone must be an IANA time zone name"),
        ("quiet_min_severity", "loud", "Still page me for must be one of critical, error, warning, info"),
    ],
)
async def test_the_engines_error_is_shown_at_its_field_and_nothing_is_saved(
    clocked: TestClient, pool: asyncpg.Pool, field: str, value: str, message: str
) -> None:
    csrf = await log_in(clocked, await web_user(pool))
    form = {"csrf_token": csrf, **NIGHT, "quiet_min_severity": "warning", field: value}
    resp = await clocked.post("/profile/quiet-hours", data=form)
    assert resp.status == 400
    html = await resp.text()
    assert field_error(html, field).startswith(message), field_error(html, field)
    assert html.count('class="field-error"') == 1
    # what was typed is kept (the severity chosen too), and a refused form is never redrawn
    assert 'value="warning" selected' in html or field == "quiet_min_severity"
    assert f'value="{form["quiet_end"]}"' in html
    assert 'data-zone-source="default"' not in html
    assert await saved(clocked) is None


async def test_without_the_browsers_zone_the_form_says_utc_and_lets_the_page_redraw_once(
    client: TestClient, pool: asyncpg.Pool
) -> None:
    await log_in(client, await web_user(pool))
    page = await (await client.get("/profile")).text()
    assert chosen_zone(page) == "UTC"
    # static/timezone.js (on every page) sets the cookie and draws this page again in it
    assert 'data-zone="UTC" data-zone-source="default"' in page
    assert re.search(r'<script src="/static/timezone\.[0-9a-f]+\.js" defer>', page)


async def test_a_change_without_the_csrf_token_saves_nothing_and_ones_own_only(
    client: TestClient, pool: asyncpg.Pool
) -> None:
    csrf = await log_in(client, await web_user(pool))
    for data in ({**NIGHT}, {**NIGHT, "csrf_token": "wrong"}):
        resp = await client.post("/profile/quiet-hours", data=data, allow_redirects=False)
        assert resp.status == 403, data
    assert await saved(client) is None
    data = {**NIGHT, "csrf_token": csrf}
    resp = await client.post("/profile/quiet-hours", data=data, allow_redirects=False)
    assert resp.status == 303
    assert await saved(client) is not None
    # someone else signed in on this browser sees none of them, and has none
    await log_in(client, await web_user(pool))
    assert "No quiet hours" in section(await (await client.get("/profile")).text())
    assert await saved(client) is None
