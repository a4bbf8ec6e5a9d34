"""The Maintenance page over HTTP: maintenance windows made "for 2 hours" or from-to (the engine's
error at its field first), ended now; silences made from matcher lines, expired and then listed as
expired; who may do what (an admin makes windows, a responder silences, a viewer neither) refused
server-side; the incident page and the webhook page saying what holds their pages."""

from __future__ import annotations

import re
import uuid
from typing import Any

import asyncpg
from aiohttp.test_utils import TestClient

from engine.settings import Settings
from tests.support.dashboard import signed_in
from tests.support.factories import Account, create, new_account, path_of, run_worker
from tests.support.html_text import field_error, text_of
from tests.support.teams import new_team

HOOK = {"name": "Payments", "notificationTypes": ["EMAIL"]}


async def api_list(client: TestClient, account: Account, what: str) -> list[dict[str, Any]]:
    resp = await client.get(f"/api/{what}", headers=account.headers)
    assert resp.status == 200, await resp.text()
    return list((await resp.json())[what.replace("-", "_")])


def form_of(page: str, form_id: str) -> str:
    found = re.search(rf'<form [^>]*id="{form_id}".*?</form>', page, re.S)
    assert found, form_id
    return found.group(0)


async def test_an_admin_starts_maintenance_for_two_hours_after_a_field_error_and_ends_it(
    client: TestClient, pool: asyncpg.Pool, account: Account
) -> None:
    hook = await create(client, account, HOOK)
    csrf = await signed_in(client, pool, account)
    page = await (await client.get("/maintenance")).text()
    assert "No maintenance on or planned." in text_of(page) and 'aria-current="page">Maintenance' in page

    form = {
        "csrf_token": csrf,
        "window_target": f"webhook:{hook['id']}",
        "window_duration": "two hours",
        "window_reason": "DB <upgrade>",
        "window_page_on_end": "on",
    }
    resp = await client.post("/maintenance/windows", data=form)
    assert resp.status == 400
    page = await resp.text()
    assert field_error(page, "window_duration").startswith("For how long must be a duration"), page
    assert 'value="DB &lt;upgrade&gt;"' in page
    assert await api_list(client, account, "maintenance-windows") == []

    resp = await client.post("/maintenance/windows", data={**form, "window_duration": "2h"})
    assert resp.status == 200
    words = text_of(await resp.text())
    assert "Maintenance window saved" in words and "Webhook Payments On now" in words
    assert "DB <upgrade>" in words and "Pages what it held when it ends" in words
    [window] = await api_list(client, account, "maintenance-windows")
    assert window["webhook_id"] == hook["id"] and window["status"] == "active" and window["page_on_end"]

    shown = await (await client.get(f"/webhooks/{hook['id']}")).text()
    assert "In maintenance until" in text_of(shown)

    resp = await client.post(f"/maintenance/windows/{window['id']}/end", data={"csrf_token": csrf})
    words = text_of(await resp.text())
    assert "Maintenance ended" in words and "No maintenance on or planned." in words
    [ended] = await api_list(client, account, "maintenance-windows")
    assert ended["status"] == "ended"


async def test_a_window_from_to_in_the_viewers_zone(
    client: TestClient, pool: asyncpg.Pool, account: Account
) -> None:
    team = await new_team(client, account)
    csrf = await signed_in(client, pool, account)
    form = {
        "csrf_token": csrf,
        "window_target": f"team:{team['id']}",
        "window_starts": "2099-03-01T22:00",
        "window_ends": "2099-03-02T01:30",
        "window_reason": "Network change",
    }
    resp = await client.post("/maintenance/windows?tz=Europe/Berlin", data=form)
    assert resp.status == 200, await resp.text()
    [window] = await api_list(client, account, "maintenance-windows")
    assert window["team_id"] == team["id"] and window["webhook_id"] is None
    assert window["starts_at"].startswith("2099-03-01T21:00") and window["ends_at"].startswith(
        "2099-03-02T00:30"
    )
    assert window["status"] == "scheduled" and window["page_on_end"] is False
    words = text_of(await (await client.get("/maintenance")).text())
    assert "Every webhook of Platform Upcoming" in words and "Pages nothing when it ends" in words


async def test_a_silence_from_matcher_lines_is_made_expired_and_listed_as_expired(
    client: TestClient, pool: asyncpg.Pool, account: Account
) -> None:
    hook = await create(client, account, HOOK)
    csrf = await signed_in(client, pool, account)
    form = {
        "csrf_token": csrf,
        "silence_target": f"webhook:{hook['id']}",
        "silence_matchers": 'severity="warning"\nsource=~"staging-(db"',
        "silence_duration": "2h",
        "silence_comment": "staging is rebuilt",
    }
    resp = await client.post("/maintenance/silences", data=form)
    assert resp.status == 400
    assert field_error(await resp.text(), "silence_matchers").startswith("Line 2")
    assert await api_list(client, account, "silences") == []

    fixed = {**form, "silence_matchers": 'severity="warning"\nsource=~"staging-.*"'}
    resp = await client.post("/maintenance/silences", data=fixed)
    words = text_of(await resp.text())
    assert "Silence saved" in words and 'severity="warning", source=~"staging-.*"' in words
    [silence] = await api_list(client, account, "silences")
    assert [(m["name"], m["operator"], m["value"]) for m in silence["matchers"]] == [
        ("severity", "=", "warning"),
        ("source", "=~", "staging-.*"),
    ]
    assert silence["comment"] == "staging is rebuilt" and silence["status"] == "active"

    resp = await client.post(f"/maintenance/silences/{silence['id']}/expire", data={"csrf_token": csrf})
    page = await resp.text()
    assert "Silence expired" in text_of(page) and "No silence on or planned." in text_of(page)
    expired = re.search(r'<details class="expired">(.*?)</details>', page, re.S)
    assert expired and "staging is rebuilt" in expired.group(1) and "(1)" in expired.group(1)
    [gone] = await api_list(client, account, "silences")
    assert gone["status"] == "expired"


async def test_lower_roles_are_refused_server_side(
    client: TestClient, pool: asyncpg.Pool, account: Account
) -> None:
    responder, viewer = await new_account(pool), await new_account(pool)
    team = await new_team(client, account, members={"responder": responder, "viewer": viewer})
    hook = await create(client, account, {**HOOK, "teamId": team["id"]})
    window = {"reason": "upgrade", "duration": "1h", "webhookId": hook["id"]}
    resp = await client.post("/api/maintenance-windows", json=window, headers=account.headers)
    assert resp.status == 201
    window_id = (await resp.json())["maintenance_window"]["id"]
    silence = {
        "matchers": [{"name": "severity", "value": "info"}],
        "duration": "1h",
        "comment": "c",
        "teamId": team["id"],
    }
    resp = await client.post("/api/silences", json=silence, headers=account.headers)
    silence_id = (await resp.json())["silence"]["id"]

    # A responder silences, but neither makes nor ends a window; the page offers only what it may.
    csrf = await signed_in(client, pool, responder)
    page = await (await client.get("/maintenance")).text()
    window_form, silence_form = form_of(page, "window-form"), form_of(page, "silence-form")
    assert team["id"] not in window_form and hook["id"] not in window_form  # its own team's only
    assert f'value="team:{team["id"]}"' in silence_form
    assert (
        f"/maintenance/windows/{window_id}/end" not in page
        and f"/maintenance/silences/{silence_id}/expire" in page
    )
    made = {
        "csrf_token": csrf,
        "window_target": f"team:{team['id']}",
        "window_duration": "1h",
        "window_reason": "x",
    }
    assert (await client.post("/maintenance/windows", data=made)).status == 403
    assert (
        await client.post(f"/maintenance/windows/{window_id}/end", data={"csrf_token": csrf})
    ).status == 403
    assert [w["status"] for w in await api_list(client, account, "maintenance-windows")] == ["active"]
    await client.post("/sign-out", data={"csrf_token": csrf})

    # A viewer reads both and changes neither.
    csrf = await signed_in(client, pool, viewer)
    page = await (await client.get("/maintenance")).text()
    assert "upgrade" in page and team["id"] not in form_of(page, "silence-form") and "/expire" not in page
    silenced = {
        "csrf_token": csrf,
        "silence_target": f"team:{team['id']}",
        "silence_matchers": "severity=info",
        "silence_duration": "1h",
        "silence_comment": "x",
    }
    assert (await client.post("/maintenance/silences", data=silenced)).status == 403
    assert (
        await client.post(f"/maintenance/silences/{silence_id}/expire", data={"csrf_token": csrf})
    ).status == 403
    assert (await client.post("/maintenance/windows", data={**made, "csrf_token": csrf})).status == 403
    assert [s["status"] for s in await api_list(client, account, "silences")] == ["active"]
    # and a form without the CSRF token does nothing for anyone
    assert (await client.post(f"/maintenance/silences/{silence_id}/expire")).status == 403


async def test_the_incident_page_says_a_window_or_a_silence_holds_its_pages(
    client: TestClient, pool: asyncpg.Pool, account: Account, settings: Settings
) -> None:
    hook = await create(client, account, HOOK)
    await client.post(
        "/api/maintenance-windows",
        json={"reason": "DB upgrade", "duration": "1h", "webhookId": hook["id"]},
        headers=account.headers,
    )
    other = await create(client, account, {**HOOK, "name": "Staging"})
    silence = {"matchers": [{"name": "severity", "value": "warning"}], "duration": "1h", "comment": "noisy"}
    await client.post("/api/silences", json={**silence, "webhookId": other["id"]}, headers=account.headers)
    for target in (hook, other):
        resp = await client.post(path_of(target), json={"title": "Disk full", "severity": "warning"})
        assert resp.status == 202
    await run_worker(settings)
    await signed_in(client, pool, account)
    async with pool.acquire() as conn:
        held = {
            r["webhook_id"]: r["id"]
            for r in await conn.fetch(
                "SELECT id, webhook_id FROM incidents WHERE webhook_id = ANY($1::uuid[])",
                [uuid.UUID(hook["id"]), uuid.UUID(other["id"])],
            )
        }
    words = text_of(await (await client.get(f"/incidents/{held[uuid.UUID(hook['id'])]}")).text())
    assert "Pages held: maintenance until" in words and "DB upgrade" in words
    words = text_of(await (await client.get(f"/incidents/{held[uuid.UUID(other['id'])]}")).text())
    assert "Pages held: silenced until" in words and "noisy" in words
    words = text_of(await (await client.get(f"/webhooks/{other['id']}")).text())
    assert "1 silence on now" in words
