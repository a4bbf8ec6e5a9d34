"""Webhooks and their incidents belong to a team: members read them (viewer), responders test,
acknowledge, resolve and annotate, admins change them; to anyone else they do not exist. A user
alone in their personal team sees exactly what they saw before teams."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import asyncpg
from aiohttp.test_utils import TestClient

from api.state import POOL
from engine.alerts import lifecycle
from engine.alerts.payloads import parse_alert
from tests.support.factories import FULL, Account, assert_error, create, new_account
from tests.support.teams import new_team, personal_team

EMAIL_ONLY = {
    "name": "Team DB",
    "notificationTypes": ["EMAIL"],
    "targetChannels": {"email": "db@example.com"},
}


async def _incident(client: TestClient, webhook: dict, key: str = "db") -> None:
    """An alert stored as process_alert stores it: it opens (or joins) an incident."""
    parsed = parse_alert(f'{{"title": "DB down", "dedup_key": "{key}"}}'.encode(), "application/json")
    async with client.server.app[POOL].acquire() as conn:
        await lifecycle.record_alert(
            conn, uuid.uuid4(), uuid.UUID(webhook["id"]), parsed, received_at=datetime.now(UTC)
        )


async def _team_webhook(client: TestClient, admin: Account, team: dict) -> dict:
    return await create(client, admin, {**EMAIL_ONLY, "teamId": team["id"]})


async def test_a_webhook_goes_to_the_personal_team_by_default(client: TestClient, account: Account) -> None:
    webhook = await create(client, account)
    assert webhook["team_id"] == (await personal_team(client, account))["id"]


async def test_members_see_the_teams_webhooks_and_roles_decide_what_they_do(
    client: TestClient, account: Account, other_account: Account, pool: asyncpg.Pool
) -> None:
    viewer, responder, outsider = other_account, await new_account(pool), await new_account(pool)
    team = await new_team(client, account, members={"viewer": viewer, "responder": responder})
    webhook = await _team_webhook(client, account, team)
    own = await create(client, viewer)  # the viewer's own, in their personal team
    assert webhook["team_id"] == team["id"]
    listing = await (await client.get("/api/webhooks", headers=viewer.headers)).json()
    assert {w["id"] for w in listing["webhooks"]} == {webhook["id"], own["id"]} and listing["total"] == 2
    path = f"/api/webhooks/{webhook['id']}"
    for who in (viewer, responder):
        resp = await client.get(path, headers=who.headers)
        assert resp.status == 200 and (await resp.json())["webhook"]["statistics"]["total_calls"] == 0
    for who in (viewer, responder):
        for method, url, body in [
            ("PATCH", path, {"name": "renamed"}),
            ("DELETE", path, None),
            ("POST", "/api/webhooks", {**EMAIL_ONLY, "teamId": team["id"]}),
        ]:
            resp = await client.request(method, url, json=body, headers=who.headers)
            assert resp.status == 403, (method, url, await resp.text())
            assert_error(await resp.json(), "INSUFFICIENT_PERMISSIONS")
    resp = await client.post(f"{path}/test", headers=viewer.headers)
    assert resp.status == 403
    resp = await client.post(f"{path}/test", headers=responder.headers)
    assert resp.status == 202
    # an outsider: nothing there, not even the team
    for method, url, body in [
        ("GET", path, None),
        ("PATCH", path, {"name": "x"}),
        ("POST", f"{path}/test", None),
    ]:
        resp = await client.request(method, url, json=body, headers=outsider.headers)
        assert resp.status == 404, (method, url)
    resp = await client.post(
        "/api/webhooks", json={**EMAIL_ONLY, "teamId": team["id"]}, headers=outsider.headers
    )
    assert resp.status == 404
    assert_error(await resp.json(), "TEAM_NOT_FOUND")
    outsiders = await (await client.get("/api/webhooks", headers=outsider.headers)).json()
    assert outsiders["webhooks"] == [] and outsiders["total"] == 0


async def test_an_admin_changes_and_deletes_the_teams_webhooks(
    client: TestClient, account: Account, other_account: Account
) -> None:
    team = await new_team(client, account, members={"admin": other_account})
    webhook = await _team_webhook(client, account, team)
    path = f"/api/webhooks/{webhook['id']}"
    resp = await client.patch(path, json={"name": "Renamed by admin"}, headers=other_account.headers)
    assert resp.status == 200 and (await resp.json())["webhook"]["name"] == "Renamed by admin"
    mine = await personal_team(client, other_account)
    resp = await client.patch(path, json={"teamId": mine["id"]}, headers=other_account.headers)
    assert resp.status == 409
    assert_error(await resp.json(), "WEBHOOK_TEAM_FIXED")
    resp = await client.patch(path, json={"teamId": team["id"]}, headers=other_account.headers)
    assert resp.status == 200  # its own team: nothing to change
    assert (await client.delete(path, headers=other_account.headers)).status == 200
    assert (await client.get(path, headers=account.headers)).status == 404


async def test_aliases_are_unique_per_team(
    client: TestClient, account: Account, other_account: Account
) -> None:
    team = await new_team(client, account, members={"admin": other_account})
    first = await create(client, account, {**EMAIL_ONLY, "teamId": team["id"], "alias": "db"})
    resp = await client.post(
        "/api/webhooks",
        json={**EMAIL_ONLY, "teamId": team["id"], "alias": "db"},
        headers=other_account.headers,
    )
    assert resp.status == 409 and (await resp.json())["code"] == "ALIAS_TAKEN"
    elsewhere = await create(client, account, {**EMAIL_ONLY, "alias": "db"})  # another team: fine
    assert first["alias"] == elsewhere["alias"] == "db"


async def test_incidents_follow_their_webhooks_team(
    client: TestClient, account: Account, other_account: Account, pool: asyncpg.Pool
) -> None:
    viewer, responder, outsider = other_account, await new_account(pool), await new_account(pool)
    team = await new_team(client, account, members={"viewer": viewer, "responder": responder})
    webhook = await _team_webhook(client, account, team)
    await _incident(client, webhook)
    listing = await (await client.get("/api/incidents", headers=viewer.headers)).json()
    (incident,) = listing["incidents"]
    assert (incident["team_id"], incident["webhook_id"], incident["number"]) == (team["id"], webhook["id"], 1)
    path = f"/api/incidents/{incident['id']}"
    assert (await client.get(path, headers=viewer.headers)).status == 200
    for action, body in [("acknowledge", None), ("resolve", None), ("notes", {"text": "looking"})]:
        resp = await client.post(f"{path}/{action}", json=body, headers=viewer.headers)
        assert resp.status == 403, action
        assert_error(await resp.json(), "INSUFFICIENT_PERMISSIONS")
        resp = await client.post(f"{path}/{action}", json=body, headers=outsider.headers)
        assert resp.status == 404, action
    resp = await client.post(f"{path}/acknowledge", headers=responder.headers)
    assert resp.status == 200
    detail = (await resp.json())["incident"]
    assert detail["acknowledged_by"] == {"type": "user", "user_id": str(responder.user.id)}
    assert (await (await client.get("/api/incidents", headers=outsider.headers)).json())["incidents"] == []


async def test_incident_numbers_run_per_team(
    client: TestClient, account: Account, other_account: Account
) -> None:
    team = await new_team(client, account, members={"admin": other_account})
    theirs = await create(client, other_account, {**EMAIL_ONLY, "teamId": team["id"]})
    mine = await _team_webhook(client, account, team)
    personal = await create(client, account, EMAIL_ONLY)
    await _incident(client, theirs, "a")
    await _incident(client, mine, "b")
    await _incident(client, personal, "c")
    await _incident(client, theirs, "d")
    listing = await (await client.get("/api/incidents", headers=account.headers)).json()
    numbers = sorted((i["team_id"] == team["id"], i["number"]) for i in listing["incidents"])
    assert numbers == [(False, 1), (True, 1), (True, 2), (True, 3)]


async def test_a_team_with_webhooks_is_not_deleted(client: TestClient, account: Account) -> None:
    team = await new_team(client, account)
    webhook = await _team_webhook(client, account, team)
    resp = await client.delete(f"/api/teams/{team['id']}", headers=account.headers)
    assert resp.status == 409
    assert_error(await resp.json(), "TEAM_NOT_EMPTY")
    assert (await client.delete(f"/api/webhooks/{webhook['id']}", headers=account.headers)).status == 200
    assert (await client.delete(f"/api/teams/{team['id']}", headers=account.headers)).status == 200


async def test_reports_cover_every_team_of_the_caller(
    client: TestClient, account: Account, other_account: Account
) -> None:
    team = await new_team(client, account, members={"viewer": other_account})
    webhook = await _team_webhook(client, account, team)
    await _incident(client, webhook)
    await create(client, account, FULL)  # the owner's personal webhook: not the viewer's business
    resp = await client.post("/api/reports/generate", json={"type": "summary"}, headers=other_account.headers)
    assert resp.status == 200, await resp.text()
    report = (await resp.json())["report"]
    assert [w["name"] for w in report["webhooks"]] == ["Team DB"]
    assert report["total"]["calls"] == 1


async def test_bad_team_ids_are_a_400_naming_the_field(client: TestClient, account: Account) -> None:
    for team_id in ["not-a-uuid", 42, None]:
        resp = await client.post(
            "/api/webhooks", json={**EMAIL_ONLY, "teamId": team_id}, headers=account.headers
        )
        assert resp.status == 400, team_id
        data = await resp.json()
        assert data["code"] == "VALIDATION_ERROR" and "teamId" in data["error"]
