"""Who may do what to a schedule: viewers read, admins write, a responder makes and removes
overrides for themselves only, and a user outside the team finds nothing."""

from __future__ import annotations

import asyncpg
from aiohttp.test_utils import TestClient

from tests.support.factories import Account, assert_error, new_account
from tests.support.schedules import create_schedule, rotation
from tests.support.teams import new_team

SHIFT = {"start": "2025-03-11T12:00:00Z", "end": "2025-03-11T18:00:00Z"}


async def test_viewers_read_and_every_write_is_403(
    client: TestClient, account: Account, other_account: Account
) -> None:
    viewer = other_account
    team = await new_team(client, account, members={"viewer": viewer})
    made = await create_schedule(
        client, account, teamId=team["id"], rotations=[rotation([str(account.user.id)])]
    )
    base = f"/api/schedules/{made['id']}"
    for path in (base, f"{base}/overrides", f"{base}/on-call", f"{base}/shifts"):
        assert (await client.get(path, headers=viewer.headers)).status == 200, path
    writes = [
        ("POST", "/api/schedules", {"name": "mine", "timeZone": "UTC", "teamId": team["id"]}),
        ("PATCH", base, {"name": "mine now"}),
        ("DELETE", base, None),
        ("POST", f"{base}/overrides", {"userId": str(viewer.user.id), **SHIFT}),
        ("POST", f"{base}/ical/rotate", None),
    ]
    for method, path, body in writes:
        resp = await client.request(method, path, json=body, headers=viewer.headers)
        assert resp.status == 403, (method, path, await resp.text())
        assert_error(await resp.json(), "INSUFFICIENT_PERMISSIONS")
    after = await (await client.get(base, headers=account.headers)).json()
    assert after["schedule"]["name"] == "Ops"


async def test_a_responder_overrides_for_themselves_only_and_an_admin_for_anyone(
    client: TestClient, account: Account, pool: asyncpg.Pool
) -> None:
    responder, colleague, admin = [await new_account(pool) for _ in range(3)]
    team = await new_team(
        client, account, members={"responder": responder, "viewer": colleague, "admin": admin}
    )
    made = await create_schedule(
        client,
        account,
        teamId=team["id"],
        rotations=[rotation([str(colleague.user.id), str(responder.user.id)])],
    )
    base = f"/api/schedules/{made['id']}/overrides"
    # Taking a colleague's shift: the override is the responder's own.
    mine = await client.post(
        base, json={"userId": str(responder.user.id), "replacesUserId": str(colleague.user.id), **SHIFT},
        headers=responder.headers,
    )  # fmt: skip
    assert mine.status == 201, await mine.text()
    override = (await mine.json())["override"]
    assert (override["user_id"], override["replaces_user_id"], override["created_by"]) == (
        str(responder.user.id),
        str(colleague.user.id),
        str(responder.user.id),
    )
    assert (override["start"], override["end"]) == ("2025-03-11T12:00:00.000Z", "2025-03-11T18:00:00.000Z")
    theirs = await client.post(
        base, json={"userId": str(colleague.user.id), **SHIFT}, headers=responder.headers
    )
    assert theirs.status == 403
    assert_error(await theirs.json(), "INSUFFICIENT_PERMISSIONS")
    # An admin puts anyone on call, and the responder cannot remove that one, only their own.
    by_admin = await client.post(
        base, json={"userId": str(colleague.user.id), **SHIFT}, headers=admin.headers
    )
    assert by_admin.status == 201
    other_id = (await by_admin.json())["override"]["id"]
    listed = await client.get(base, params={"from": "2025-03-01T00:00:00Z"}, headers=responder.headers)
    assert [o["id"] for o in (await listed.json())["overrides"]] == [override["id"], other_id]
    refused = await client.delete(f"{base}/{other_id}", headers=responder.headers)
    assert refused.status == 403
    assert_error(await refused.json(), "INSUFFICIENT_PERMISSIONS")
    assert (await client.delete(f"{base}/{override['id']}", headers=responder.headers)).status == 200
    assert (await client.delete(f"{base}/{other_id}", headers=admin.headers)).status == 200
    left = await client.get(base, params={"from": "2025-03-01T00:00:00Z"}, headers=account.headers)
    assert (await left.json())["overrides"] == []
    again = await client.delete(f"{base}/{other_id}", headers=admin.headers)
    assert again.status == 404
    assert_error(await again.json(), "OVERRIDE_NOT_FOUND")


async def test_an_override_names_team_members_and_an_end_after_its_start(
    client: TestClient, account: Account, other_account: Account
) -> None:
    made = await create_schedule(client, account, rotations=[rotation([str(account.user.id)])])
    base = f"/api/schedules/{made['id']}/overrides"
    me = str(account.user.id)
    for body, field in [
        ({"userId": str(other_account.user.id), **SHIFT}, "userId"),  # not in the team
        ({"userId": me, "replacesUserId": str(other_account.user.id), **SHIFT}, "replacesUserId"),
        ({"userId": "alice", **SHIFT}, "userId"),
        ({"userId": me, "start": "2025-03-11T12:00:00", "end": SHIFT["end"]}, "start"),
        ({"userId": me, "start": SHIFT["end"], "end": SHIFT["start"]}, "end"),
        ({"userId": me, "start": SHIFT["start"]}, "end"),
    ]:
        resp = await client.post(base, json=body, headers=account.headers)
        assert resp.status == 400, (body, await resp.text())
        data = await resp.json()
        assert_error(data, "VALIDATION_ERROR")
        assert data["error"].startswith(f"{field} "), data


async def test_a_user_outside_the_team_gets_404_for_every_route(
    client: TestClient, account: Account, other_account: Account
) -> None:
    made = await create_schedule(client, account, rotations=[rotation([str(account.user.id)])])
    base = f"/api/schedules/{made['id']}"
    created = await client.post(
        f"{base}/overrides", json={"userId": str(account.user.id), **SHIFT}, headers=account.headers
    )
    override_id = (await created.json())["override"]["id"]
    calls = [
        ("GET", base, None),
        ("PATCH", base, {"name": "mine now"}),
        ("DELETE", base, None),
        ("GET", f"{base}/overrides", None),
        ("POST", f"{base}/overrides", {"userId": str(other_account.user.id), **SHIFT}),
        ("DELETE", f"{base}/overrides/{override_id}", None),
        ("GET", f"{base}/on-call", None),
        ("GET", f"{base}/shifts", None),
        ("POST", f"{base}/ical/rotate", None),
    ]
    for method, path, body in calls:
        resp = await client.request(method, path, json=body, headers=other_account.headers)
        assert resp.status == 404, (method, path, await resp.text())
        assert_error(await resp.json(), "SCHEDULE_NOT_FOUND")
    # Nor can a schedule be made in a team one is not in.
    resp = await client.post(
        "/api/schedules",
        json={"name": "x", "timeZone": "UTC", "teamId": made["team_id"]},
        headers=other_account.headers,
    )
    assert resp.status == 404
    listing = await (await client.get("/api/schedules", headers=other_account.headers)).json()
    assert listing["schedules"] == []
    still = await (await client.get(base, headers=account.headers)).json()
    assert still["schedule"]["name"] == "Ops"
