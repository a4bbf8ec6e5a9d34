"""The On-call pages over HTTP (the browser flow is in tests/test_dashboard_browser.py): a schedule
and its rotation made through the form, an override through the form in the viewer's time zone,
the on-call-now card and the timeline, escalation policies; the engine's field errors shown at
their fields, and what a member below admin may not do refused by the server."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import asyncpg
import pytest
from aiohttp.test_utils import TestClient
from arq.connections import ArqRedis

from engine.settings import Settings
from engine.teams.members import MemberInput, TeamInput, add_member, create_team
from tests.support.clock import ManualClock
from tests.support.factories import make_client
from tests.support.html_text import field_error, text_of
from tests.support.sessions import WebUser, log_in, web_user

NOW = datetime(2026, 3, 10, 15, 0, tzinfo=UTC)  # a Tuesday; New York is UTC-4 (DST began 8 March)
NEW_YORK = {"monoduty_tz": "America/New_York"}


@pytest.fixture
async def clocked(settings: Settings, redis: ArqRedis) -> AsyncIterator[TestClient]:
    client = await make_client(settings, clock=ManualClock(NOW))
    yield client
    await client.close()


async def team_of(pool: asyncpg.Pool, owner: WebUser, **members: tuple[WebUser, str]) -> uuid.UUID:
    async with pool.acquire() as conn:
        team = await create_team(conn, owner.user.id, TeamInput(name=f"Platform {uuid.uuid4().hex[:6]}"))
        for who, role in members.values():
            await add_member(conn, owner.user.id, team["id"], MemberInput(email=who.email, role=role), NOW)
    return team["id"]


async def schedule_form(client: TestClient, csrf: str, team: uuid.UUID, people: list[WebUser], **fields: str):
    data = [
        ("csrf_token", csrf),
        ("team", str(team)),
        ("name", "Platform primary"),
        ("time_zone", "America/New_York"),
        ("rotation_name", "Weekly"),
        ("shift_length", "1"),
        ("shift_unit", "weeks"),
        ("start", "2026-03-02T09:00"),  # a Monday, 09:00 New York
        *[("participant", str(p.user.id)) for p in people],
    ]
    data = [(k, fields.get(k, v)) for k, v in data]
    return await client.post("/on-call/new-schedule", data=data, allow_redirects=False)


async def test_an_empty_on_call_page_says_what_to_do_first(client: TestClient, pool: asyncpg.Pool) -> None:
    who = await web_user(pool)
    await log_in(client, who)
    page = text_of(await (await client.get("/on-call")).text())
    assert "No schedules yet" in page and "Create your first schedule" in page
    assert "invite the people who share the pager" in page.lower()
    team = text_of(await (await client.get("/team")).text())
    assert "Just you here" in team and "Invite someone" in team


async def test_a_schedule_and_an_override_made_through_the_forms(
    clocked: TestClient, pool: asyncpg.Pool
) -> None:
    admin, bob = await web_user(pool), await web_user(pool)
    team = await team_of(pool, admin, bob=(bob, "responder"))
    csrf = await log_in(clocked, admin)
    clocked.session.cookie_jar.update_cookies(NEW_YORK)

    # the engine's error, at its field, the rest of the form kept
    resp = await schedule_form(clocked, csrf, team, [admin, bob], shift_length="0")
    assert resp.status == 400
    html = await resp.text()
    assert field_error(html, "shift_length").startswith("Shift length must be a whole number")
    assert 'value="Platform primary"' in html and f'value="{bob.user.id}" checked' in html
    resp = await schedule_form(clocked, csrf, team, [])
    assert field_error(await resp.text(), "participants").startswith("People must name at least one")

    resp = await schedule_form(clocked, csrf, team, [admin, bob])
    assert resp.status == 303 and resp.headers["Location"] == "/on-call"
    async with pool.acquire() as conn:
        rotation = await conn.fetchrow(
            "SELECT r.participants, r.shift_unit, r.start FROM schedule_rotations r"
            " JOIN schedules s ON s.id = r.schedule_id WHERE s.team_id = $1",
            team,
        )
    assert rotation["participants"] == [admin.user.id, bob.user.id]
    assert rotation["start"] == datetime(2026, 3, 2, 9, 0)

    # week 2 (from Monday 9 March 09:00) is Bob's; the handoff is next Monday 09:00 New York
    page = await clocked.get("/on-call")
    html = await page.text()
    schedule_id = re.search(r'action="/on-call/schedules/([0-9a-f-]{36})/overrides"', html).group(1)
    card = text_of(re.search(r'<div class="now-card.*?</div>', html, re.S).group(0))
    name = bob.user.name or bob.email
    assert f"On call now {name}" in card
    assert "Next handoff Mon 16 Mar 09:00" in card and (admin.user.name or admin.email) in card
    assert "Layer 1: Weekly" in text_of(html) and "Times shown in" in html
    assert 'data-zone="America/New_York"' in html

    # an override typed in New York time: an error first (until before from), then the real one
    form = {"csrf_token": csrf, "user": str(admin.user.id), "from_day": "2026-03-10"}
    path = f"/on-call/schedules/{schedule_id}/overrides"
    resp = await clocked.post(path, data={**form, "start": "2026-03-10T10:00", "end": "2026-03-10T09:00"})
    assert resp.status == 400
    assert field_error(await resp.text(), f"ov-end-{schedule_id}") == "Until must be after start"
    resp = await clocked.post(
        path, data={**form, "start": "2026-03-10T10:00", "end": "2026-03-10T18:00"}, allow_redirects=False
    )
    assert resp.status == 303 and resp.headers["Location"] == "/on-call?from=2026-03-10"
    async with pool.acquire() as conn:
        override = await conn.fetchrow(
            "SELECT user_id, start_at, end_at FROM schedule_overrides WHERE schedule_id = $1",
            uuid.UUID(schedule_id),
        )
    assert override["user_id"] == admin.user.id
    assert override["start_at"] == datetime(2026, 3, 10, 14, 0, tzinfo=UTC)  # 10:00 EDT
    assert override["end_at"] == datetime(2026, 3, 10, 22, 0, tzinfo=UTC)

    html = await (await clocked.get("/on-call")).text()
    card = text_of(re.search(r'<div class="now-card.*?</div>', html, re.S).group(0))
    assert f"On call now {admin.user.name or admin.email} Override" in card
    assert "Next handoff Tue 10 Mar 18:00" in card and name in card
    assert 'class="bar bar-override' in html  # drawn as an override, and said so in words
    assert f"{admin.user.name or admin.email} (override)" in text_of(html)


async def test_a_responder_overrides_only_for_themselves(clocked: TestClient, pool: asyncpg.Pool) -> None:
    admin, bob, vera = await web_user(pool), await web_user(pool), await web_user(pool)
    team = await team_of(pool, admin, bob=(bob, "responder"), vera=(vera, "viewer"))
    csrf = await log_in(clocked, admin)
    assert (await schedule_form(clocked, csrf, team, [admin, bob])).status == 303
    clocked.session.cookie_jar.clear()
    csrf = await log_in(clocked, bob)
    html = await (await clocked.get("/on-call")).text()
    schedule_id = re.search(r'action="/on-call/schedules/([0-9a-f-]{36})/overrides"', html).group(1)
    people = re.search(r'<select id="ov-user-[^"]+" name="user">(.*?)</select>', html, re.S).group(1)
    assert str(bob.user.id) in people and str(admin.user.id) not in people
    form = {"csrf_token": csrf, "start": "2026-03-10T10:00", "end": "2026-03-10T18:00"}
    path = f"/on-call/schedules/{schedule_id}/overrides"
    refused = await clocked.post(path, data={**form, "user": str(admin.user.id)})
    assert refused.status == 403
    resp = await clocked.post(path, data={**form, "user": str(bob.user.id)}, allow_redirects=False)
    assert resp.status == 303
    created = await schedule_form(clocked, csrf, team, [bob])
    assert created.status == 403  # a schedule takes an admin, whatever the form says
    # a viewer sees the schedule, is offered no override form, and cannot post one
    clocked.session.cookie_jar.clear()
    csrf = await log_in(clocked, vera)
    html = await (await clocked.get("/on-call")).text()
    assert "Platform primary" in html and path not in html and "/layers" not in html
    forged = await clocked.post(path, data={**form, "csrf_token": csrf, "user": str(vera.user.id)})
    assert forged.status == 403
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM schedules WHERE team_id = $1", team) == 1
        made = await conn.fetch(
            "SELECT user_id FROM schedule_overrides WHERE schedule_id = $1", uuid.UUID(schedule_id)
        )
    assert [r["user_id"] for r in made] == [bob.user.id]


async def test_an_escalation_policy_made_and_changed_through_the_editor(
    client: TestClient, pool: asyncpg.Pool
) -> None:
    admin, bob = await web_user(pool), await web_user(pool)
    team = await team_of(pool, admin, bob=(bob, "viewer"))
    csrf = await log_in(client, admin)
    page = await (await client.get("/on-call/policies/new")).text()
    assert f'value="user:{bob.user.id}"' in page
    base = [("csrf_token", csrf), ("team", str(team)), ("name", "Production"), ("repeat", "1")]
    steps = [
        ("step_count", "2"),
        ("step-0-delay", "0"),
        ("step-0-target", f"user:{admin.user.id}"),
        ("step-1-delay", "15"),
        ("step-1-target", f"user:{bob.user.id}"),
    ]
    resp = await client.post("/on-call/policies/new", data=base + steps, allow_redirects=False)
    assert resp.status == 400
    html = await resp.text()
    assert field_error(html, "step-0-delay").startswith("Step 1: Wait must be a number of minutes above 0")
    assert 'value="Production"' in html
    steps[1] = ("step-0-delay", "5")
    more = await client.post("/on-call/policies/new", data=[*base, *steps, ("add_step", "1")])
    assert "Step 3" in text_of(await more.text())  # a blank third step, nothing saved yet
    resp = await client.post("/on-call/policies/new", data=base + steps, allow_redirects=False)
    assert resp.status == 303
    policy_path = resp.headers["Location"].split("?")[0]
    async with pool.acquire() as conn:
        policy = await conn.fetchrow("SELECT id, repeat FROM escalation_policies WHERE team_id = $1", team)
        stored = await conn.fetch(
            "SELECT delay_minutes, targets FROM escalation_steps WHERE policy_id = $1 ORDER BY position",
            policy["id"],
        )
    assert policy["repeat"] == 1
    assert [float(s["delay_minutes"]) for s in stored] == [5.0, 15.0]
    assert stored[1]["targets"] == [{"type": "user", "id": str(bob.user.id)}]

    edit = await (await client.get(policy_path)).text()
    assert 'name="step-1-delay" type="text" inputmode="decimal" value="15"' in edit
    changed = [*base[:3], ("repeat", "0"), *steps, ("step-1-remove", "1")]
    resp = await client.post(policy_path, data=changed, allow_redirects=False)
    assert resp.status == 303
    async with pool.acquire() as conn:
        assert (
            await conn.fetchval("SELECT count(*) FROM escalation_steps WHERE policy_id = $1", policy["id"])
            == 1
        )

    # a viewer reads it and cannot change it: no form, and the engine refuses a forged post
    client.session.cookie_jar.clear()
    csrf = await log_in(client, bob)
    view = text_of(await (await client.get(policy_path)).text())
    assert "Only an admin of its team can change this policy" in view
    assert "then wait 5 min" in view
    forged = [("csrf_token", csrf), ("name", "Hijacked"), ("step_count", "0")]
    assert (await client.post(policy_path, data=forged)).status == 403
    assert (await client.post(policy_path + "/delete", data={"csrf_token": csrf})).status == 403
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT name FROM escalation_policies WHERE id = $1", policy["id"]) == (
            "Production"
        )


async def test_a_business_hours_layer_on_top_and_its_removal(clocked: TestClient, pool: asyncpg.Pool) -> None:
    admin, bob, carol = await web_user(pool), await web_user(pool), await web_user(pool)
    team = await team_of(pool, admin, bob=(bob, "responder"), carol=(carol, "responder"))
    csrf = await log_in(clocked, admin)
    clocked.session.cookie_jar.update_cookies(NEW_YORK)
    assert (await schedule_form(clocked, csrf, team, [admin, bob])).status == 303
    html = await (await clocked.get("/on-call")).text()
    schedule_id = re.search(r'href="/on-call/schedules/([0-9a-f-]{36})/layers"', html).group(1)
    layer = [
        ("csrf_token", csrf),
        ("rotation_name", "Business hours"),
        ("participant", str(carol.user.id)),
        ("shift_length", "1"),
        ("shift_unit", "days"),
        ("start", "2026-03-02T09:00"),
        ("active_start", "09:00"),
        ("active_end", "17:00"),
    ]
    path = f"/on-call/schedules/{schedule_id}/layers"
    resp = await clocked.post(path, data=layer)  # hours without a day
    assert resp.status == 400
    assert field_error(await resp.text(), "active_days").startswith("Days must name at least one day")
    weekdays = [("active_day", str(d)) for d in range(5)]
    resp = await clocked.post(path, data=layer + weekdays, allow_redirects=False)
    assert resp.status == 303

    # Tuesday 11:00 New York: the business-hours layer (on top) has Carol on call, until 17:00
    page = text_of(await (await clocked.get("/on-call")).text())
    assert f"On call now {carol.user.name or carol.email} Next handoff Tue 10 Mar 17:00" in page
    assert "Layer 2: Business hours" in page and "only Mon, Tue, Wed, Thu, Fri 09:00 to 17:00" in page
    tokyo = text_of(await (await clocked.get("/on-call?tz=Asia/Tokyo")).text())  # a zone picked on the page
    assert "Next handoff Wed 11 Mar 06:00" in tokyo  # 17:00 in New York
    async with pool.acquire() as conn:
        stored = await conn.fetch(
            "SELECT name, participants FROM schedule_rotations WHERE schedule_id = $1 ORDER BY position",
            uuid.UUID(schedule_id),
        )
    assert [r["name"] for r in stored] == ["Weekly", "Business hours"]
    assert stored[0]["participants"] == [admin.user.id, bob.user.id]  # the first layer kept as it was

    remove = f"/on-call/schedules/{schedule_id}/layers/1/delete"
    confirm = text_of(await (await clocked.post(remove, data={"csrf_token": csrf})).text())
    assert "Remove Layer 2: Business hours from Platform primary?" in confirm  # asked first
    resp = await clocked.post(remove, data={"csrf_token": csrf, "confirm": "1"})
    assert resp.status == 200
    assert f"On call now {bob.user.name or bob.email}" in text_of(await resp.text())
    confirm = text_of(await (await clocked.get(f"/on-call/schedules/{schedule_id}/delete")).text())
    assert "Delete the schedule Platform primary?" in confirm
    resp = await clocked.post(f"/on-call/schedules/{schedule_id}/delete", data={"csrf_token": csrf})
    assert "No schedules yet" in text_of(await resp.text())


async def test_the_time_zone_saved_on_the_profile_is_the_one_the_on_call_page_shows(
    clocked: TestClient, pool: asyncpg.Pool
) -> None:
    admin, bob = await web_user(pool), await web_user(pool)
    team = await team_of(pool, admin, bob=(bob, "responder"))
    csrf = await log_in(clocked, admin)
    clocked.session.cookie_jar.update_cookies(NEW_YORK)  # the browser is in New York
    assert (await schedule_form(clocked, csrf, team, [admin, bob])).status == 303
    handoff = "Next handoff Mon 16 Mar {}"  # 09:00 New York, 13:00 UTC
    assert handoff.format("09:00") in text_of(await (await clocked.get("/on-call")).text())
    profile = await (await clocked.get("/profile")).text()
    assert re.search(r'<option value="" selected>Use my browser\'s \(America/New_York\)</option>', profile)

    resp = await clocked.post("/profile/time-zone", data={"csrf_token": csrf, "time_zone": "Mars/Olympus"})
    assert resp.status == 400
    assert field_error(await resp.text(), "time_zone").startswith("Time zone must be an IANA time zone")
    resp = await clocked.post("/profile/time-zone", data={"time_zone": "Asia/Tokyo"})  # no CSRF token
    assert resp.status == 403
    resp = await clocked.post(
        "/profile/time-zone", data={"csrf_token": csrf, "time_zone": "Asia/Tokyo"}, allow_redirects=False
    )
    assert resp.status == 303 and resp.headers["Location"] == "/profile?done=zone-set#time-zone"
    assert (await (await clocked.get("/api/auth/me")).json())["user"]["time_zone"] == "Asia/Tokyo"

    # every page now in Tokyo, whatever the browser's cookie says; ?tz= still picks one for a view
    html = await (await clocked.get("/on-call")).text()
    assert handoff.format("22:00") in text_of(html) and "(your profile's time zone)" in text_of(html)
    assert 'data-zone="Asia/Tokyo" data-zone-source="saved"' in html
    picked = text_of(await (await clocked.get("/on-call?tz=Europe/London")).text())
    assert handoff.format("13:00") in picked
    profile = await (await clocked.get("/profile")).text()
    assert "<option selected>Asia/Tokyo</option>" in profile  # the form shows it
    quiet = re.search(r'<select id="quiet_time_zone".*?</select>', profile, re.S).group(0)
    assert "<option selected>Asia/Tokyo</option>" in quiet  # quiet hours not set: they default to it

    # "use my browser's" clears it: New York again
    resp = await clocked.post("/profile/time-zone", data={"csrf_token": csrf, "time_zone": ""})
    assert "Time zone cleared" in text_of(await resp.text())
    assert handoff.format("09:00") in text_of(await (await clocked.get("/on-call")).text())
