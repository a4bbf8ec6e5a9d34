"""The dashboard's incident list and incident page over HTTP: filters (in the URL, swapped by
htmx), pages of 50 however many are open, acknowledge or resolve a selection in one POST,
reassign to a team member, a page's receipt. In a browser: tests/test_dashboard_incidents_browser.py."""

from __future__ import annotations

import html
import re
import uuid
from urllib.parse import parse_qs, urlsplit

import asyncpg
from aiohttp.test_utils import TestClient

from api.dashboard.incidents import PAGE_SIZE
from engine.settings import Settings
from tests.support.dashboard import insert_incidents, row_ids, signed_in
from tests.support.escalation import new_policy, step
from tests.support.factories import Account, create, new_account, run_worker
from tests.support.teams import new_team

OLDER = re.compile(r'<a href="([^"]+)">Older incidents</a>')
FRAGMENT = {"HX-Request": "true", "HX-Target": "incident-list"}


async def status_of(pool: asyncpg.Pool, incident_id: str) -> str:
    async with pool.acquire() as conn:
        return str(await conn.fetchval("SELECT status FROM incidents WHERE id = $1", uuid.UUID(incident_id)))


async def test_filters_narrow_the_list_and_live_in_its_url(
    client: TestClient, pool: asyncpg.Pool, account: Account
) -> None:
    team = await new_team(client, account, "Databases")
    prod = await create(client, account)
    db_hook = await create(
        client, account, {"name": "Replicas", "notificationTypes": ["EMAIL"], "teamId": team["id"]}
    )
    critical = await insert_incidents(pool, prod["id"], ["critical", "critical", "warning"])
    replica = await insert_incidents(pool, db_hook["id"], ["warning"])
    await signed_in(client, pool, account)

    async def shown(**params: str) -> list[str]:
        resp = await client.get("/", params=params)
        assert resp.status == 200, await resp.text()
        return row_ids(await resp.text())

    assert set(await shown()) == {*critical, *replica}
    assert await shown(severity="critical") == critical[1::-1]  # newest first
    assert await shown(webhook=db_hook["id"]) == replica
    assert await shown(team=team["id"]) == replica
    assert await shown(severity="warning", webhook=prod["id"]) == [critical[2]]
    assert await shown(team="", webhook="", severity="") != []  # the form's "any" is no filter
    empty = await client.get("/", params={"severity": "info"})
    assert "match these filters" in await empty.text()

    # The page shows which filters are on; the form's htmx request gets only the list, and the
    # address bar the filters' URL (a live refresh, not the form, leaves the address alone).
    page = await (await client.get("/", params={"severity": "critical"})).text()
    assert '<option value="critical" selected>' in page
    swapped = await client.get(
        "/",
        params={"status": "open", "severity": "critical", "team": ""},
        headers={**FRAGMENT, "HX-Trigger": "filters"},
    )
    body = await swapped.text()
    assert "<html" not in body and row_ids(body) == critical[1::-1]
    assert swapped.headers["HX-Push-Url"] == "/?severity=critical"
    assert 'id="list-cursor" name="cursor" value=""' in body  # a live refresh: the first page
    live = await client.get("/", params={"severity": "critical"}, headers=FRAGMENT)
    assert "HX-Push-Url" not in live.headers

    bad = await client.get("/", params={"severity": "loud"})
    assert bad.status == 400 and "severity must be one of" in await bad.text()


async def test_a_thousand_open_incidents_come_fifty_a_page(
    client: TestClient, pool: asyncpg.Pool, account: Account
) -> None:
    hook = await create(client, account)
    made = await insert_incidents(pool, hook["id"], ["error"] * 1000)
    await signed_in(client, pool, account)
    seen: list[str] = []
    url = "/"
    pages = 0
    while url:
        page = await (await client.get(url)).text()
        ids = row_ids(page)
        assert 0 < len(ids) <= PAGE_SIZE
        seen += ids
        pages += 1
        if pages == 2:  # a live refresh of this page (the form's values and its cursor) keeps it
            params = {"status": "open", "severity": "", "cursor": parse_qs(urlsplit(url).query)["cursor"][0]}
            refreshed = await client.get("/", params=params, headers=FRAGMENT)
            assert row_ids(await refreshed.text()) == ids
        older = OLDER.search(page)
        url = html.unescape(older.group(1)) if older else ""
    assert pages == 1000 // PAGE_SIZE
    assert seen == made[::-1]  # each once, newest first
    assert "(1000) Incidents" in page  # the tab's title counts every triggered one, not a page's


async def test_a_selection_is_acknowledged_in_one_post(
    client: TestClient, pool: asyncpg.Pool, account: Account, settings: Settings
) -> None:
    hook = await create(client, account)
    first, second, third = await insert_incidents(pool, hook["id"], ["critical", "error", "info"])
    resolved = (await insert_incidents(pool, hook["id"], ["info"], status="resolved"))[0]
    csrf = await signed_in(client, pool, account)
    form = [
        ("incident", first),
        ("incident", second),
        ("action", "acknowledge"),
        ("next", "/?severity=critical"),
    ]

    refused = await client.post("/incidents/bulk", data=form, allow_redirects=False)
    assert refused.status == 403
    assert await status_of(pool, first) == "triggered"

    resp = await client.post("/incidents/bulk", data=[*form, ("csrf_token", csrf)], allow_redirects=False)
    assert resp.status == 303
    back = urlsplit(resp.headers["Location"])
    assert back.path == "/" and parse_qs(back.query)["severity"] == ["critical"]
    assert [await status_of(pool, i) for i in (first, second, third)] == [
        "acknowledged",
        "acknowledged",
        "triggered",
    ]
    page = await (await client.get(resp.headers["Location"])).text()
    assert "Acknowledged 2 incidents." in page

    # One that cannot be acknowledged (resolved already) is counted, and the rest still done.
    mixed = [("incident", third), ("incident", resolved), ("action", "acknowledge"), ("csrf_token", csrf)]
    resp = await client.post("/incidents/bulk", data=mixed)
    assert "Acknowledged 1 incident. 1 could not be changed" in await resp.text()
    resolve = [("incident", first), ("incident", third), ("action", "resolve"), ("csrf_token", csrf)]
    assert (await client.post("/incidents/bulk", data=resolve, allow_redirects=False)).status == 303
    assert [await status_of(pool, i) for i in (first, second, third)] == [
        "resolved",
        "acknowledged",
        "resolved",
    ]
    await run_worker(settings)  # the RESOLVED notices the resolves planned

    nothing = await client.post("/incidents/bulk", data={"action": "resolve", "csrf_token": csrf})
    assert nothing.status == 400 and "Select one or more incidents" in await nothing.text()


async def test_a_selection_only_touches_the_callers_incidents(
    client: TestClient, pool: asyncpg.Pool, account: Account, other_account: Account
) -> None:
    theirs = (await insert_incidents(pool, (await create(client, other_account))["id"], ["critical"]))[0]
    csrf = await signed_in(client, pool, account)
    form = [("incident", theirs), ("action", "resolve"), ("csrf_token", csrf)]
    resp = await client.post("/incidents/bulk", data=form)
    assert "Resolved 0 incidents. 1 could not be changed" in await resp.text()
    assert await status_of(pool, theirs) == "triggered"


async def test_reassign_pages_the_chosen_team_member(
    client: TestClient, pool: asyncpg.Pool, account: Account, settings: Settings
) -> None:
    backup = await new_account(pool, phone="+14155550177")
    team = await new_team(client, account, "Payments", {"responder": backup})
    policy = await new_policy(client, account, step(30, account), team_id=team["id"])
    hook = await create(
        client,
        account,
        {
            "name": "Payments",
            "notificationTypes": ["EMAIL"],
            "teamId": team["id"],
            "escalationPolicyId": policy["id"],
        },
    )
    resp = await client.post(
        hook["webhook_url"].removeprefix("http://monoduty.test"), json={"title": "Card declines"}
    )
    assert resp.status == 202
    await run_worker(settings)
    incident = (
        await (
            await client.get("/api/incidents", params={"webhook": hook["id"]}, headers=account.headers)
        ).json()
    )["incidents"][0]
    csrf = await signed_in(client, pool, account)
    page = await (await client.get(f"/incidents/{incident['id']}")).text()
    assert '<label for="reassign-user">Reassign to</label>' in page
    assert f'<option value="{backup.user.id}">' in page

    path = f"/incidents/{incident['id']}/reassign"
    assert (await client.post(path, data={"user": str(backup.user.id)}, allow_redirects=False)).status == 403
    stranger = await client.post(path, data={"user": str(uuid.uuid4()), "csrf_token": csrf})
    assert stranger.status == 400  # the engine's rule: only a member of the incident's team
    resp = await client.post(
        path, data={"user": str(backup.user.id), "csrf_token": csrf}, allow_redirects=False
    )
    assert resp.status == 303 and resp.headers["Location"] == f"/incidents/{incident['id']}"
    detail = await (await client.get(f"/api/incidents/{incident['id']}", headers=account.headers)).json()
    assert [a["user_id"] for a in detail["incident"]["assigned_to"]] == [str(backup.user.id)]
    assert "Reassigned" in await (await client.get(f"/incidents/{incident['id']}")).text()

    # Escalate now: the policy's next step runs at once, said in the timeline.
    escalated = await client.post(
        f"/incidents/{incident['id']}/escalate", data={"csrf_token": csrf}, allow_redirects=False
    )
    assert escalated.status == 303
    timeline = (await (await client.get(f"/api/incidents/{incident['id']}", headers=account.headers)).json())[
        "incident"
    ]["timeline"]
    assert [e["kind"] for e in timeline].count("escalated") == 2, timeline  # the first step, then now

    # Acknowledged, it is nobody's to reassign: the form goes.
    await client.post(f"/incidents/{incident['id']}/acknowledge", data={"csrf_token": csrf})
    assert "reassign-user" not in await (await client.get(f"/incidents/{incident['id']}")).text()


async def test_a_page_shows_its_providers_receipt(
    client: TestClient, pool: asyncpg.Pool, account: Account, settings: Settings
) -> None:
    hook = await create(
        client,
        account,
        {"name": "Calls", "notificationTypes": ["CALL"], "targetChannels": {"call": "+14155550124"}},
    )
    assert (
        await client.post(
            hook["webhook_url"].removeprefix("http://monoduty.test"), json={"title": "Pager test"}
        )
    ).status == 202
    await run_worker(settings)
    incident = (
        await (
            await client.get("/api/incidents", params={"webhook": hook["id"]}, headers=account.headers)
        ).json()
    )["incidents"][0]
    async with pool.acquire() as conn:
        await conn.execute(
            "UPDATE deliveries SET receipt_status = 'undelivered', receipt_error = '30003',"
            " receipt_at = now() WHERE incident_id = $1",
            uuid.UUID(incident["id"]),
        )
    await signed_in(client, pool, account)
    page = await (await client.get(f"/incidents/{incident['id']}")).text()
    assert '<span class="target">+1415•••0124</span>' in page and "+14155550124" not in page
    assert 'class="receipt receipt-undelivered"' in page and "not answered" in page and "error 30003" in page
