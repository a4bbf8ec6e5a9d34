"""Teams and roles: every account owns a personal team; viewers read, admins manage members,
owners own; outsiders see nothing; a team never loses its last owner."""

from __future__ import annotations

import asyncio

import asyncpg
from aiohttp.test_utils import TestClient

from tests.support.factories import Account, assert_error, new_account
from tests.support.teams import add_member, new_team, personal_team, roles


async def test_a_new_account_owns_a_personal_team_named_after_it(
    client: TestClient, account: Account
) -> None:
    listing = await (await client.get("/api/teams", headers=account.headers)).json()
    assert listing["total"] == 1
    (team,) = listing["teams"]
    assert (team["personal"], team["role"], team["name"], team["member_count"]) == (
        True,
        "owner",
        account.user.email,
        1,
    )
    assert await roles(client, account, team["id"]) == {str(account.user.id): "owner"}


async def test_a_viewer_reads_but_every_change_is_403(
    client: TestClient, account: Account, other_account: Account, pool: asyncpg.Pool
) -> None:
    viewer, responder = other_account, await new_account(pool)
    team = await new_team(client, account, members={"viewer": viewer, "responder": responder})
    base = f"/api/teams/{team['id']}"
    assert (await client.get(base, headers=viewer.headers)).status == 200
    assert set(await roles(client, viewer, team["id"])) == {
        str(a.user.id) for a in (account, viewer, responder)
    }
    newcomer = await new_account(pool)
    for who, peer in ((viewer, responder), (responder, viewer)):
        for method, path, body in [
            ("PATCH", base, {"name": "mine now"}),
            ("DELETE", base, None),
            ("POST", f"{base}/members", {"email": newcomer.user.email}),
            ("PATCH", f"{base}/members/{peer.user.id}", {"role": "admin"}),
            ("PATCH", f"{base}/members/{who.user.id}", {"role": "admin"}),  # nor promote oneself
            ("DELETE", f"{base}/members/{peer.user.id}", None),
        ]:
            resp = await client.request(method, path, json=body, headers=who.headers)
            assert resp.status == 403, (method, path, await resp.text())
            data = await resp.json()
            assert_error(data, "INSUFFICIENT_PERMISSIONS")
            assert data["error"].startswith("Insufficient permissions")
    after = await (await client.get(base, headers=account.headers)).json()
    assert (after["team"]["name"], after["team"]["member_count"]) == ("Platform", 3)


async def test_a_user_outside_the_team_gets_404_for_everything(
    client: TestClient, account: Account, other_account: Account
) -> None:
    team = await new_team(client, account)
    base = f"/api/teams/{team['id']}"
    calls = [
        ("GET", base, None),
        ("PATCH", base, {"name": "x"}),
        ("DELETE", base, None),
        ("GET", f"{base}/members", None),
        ("POST", f"{base}/members", {"email": other_account.user.email}),  # cannot add themselves
        ("PATCH", f"{base}/members/{account.user.id}", {"role": "viewer"}),
        ("DELETE", f"{base}/members/{account.user.id}", None),
        ("DELETE", f"{base}/members/{other_account.user.id}", None),
    ]
    for method, path, body in calls:
        resp = await client.request(method, path, json=body, headers=other_account.headers)
        assert resp.status == 404, (method, path, await resp.text())
        assert_error(await resp.json(), "TEAM_NOT_FOUND")
    listing = await (await client.get("/api/teams", headers=other_account.headers)).json()
    assert team["id"] not in [t["id"] for t in listing["teams"]]
    assert await roles(client, account, team["id"]) == {str(account.user.id): "owner"}


async def test_an_admin_manages_members_below_owner(
    client: TestClient, account: Account, other_account: Account, pool: asyncpg.Pool
) -> None:
    admin, someone = other_account, await new_account(pool)
    team = await new_team(client, account, members={"admin": admin})
    base = f"/api/teams/{team['id']}"
    await add_member(client, admin, team["id"], someone, "viewer")
    resp = await client.patch(
        f"{base}/members/{someone.user.id}", json={"role": "responder"}, headers=admin.headers
    )
    assert resp.status == 200 and (await resp.json())["member"]["role"] == "responder"
    resp = await client.patch(base, json={"name": "Platform SRE"}, headers=admin.headers)
    assert (await resp.json())["team"]["name"] == "Platform SRE"
    # adding twice is a conflict, not a second membership
    resp = await client.post(f"{base}/members", json={"email": someone.user.email}, headers=admin.headers)
    assert resp.status == 409 and (await resp.json())["code"] == "ALREADY_MEMBER"
    # owners are an owner's business
    for method, path, body in [
        ("PATCH", f"{base}/members/{someone.user.id}", {"role": "owner"}),
        ("PATCH", f"{base}/members/{account.user.id}", {"role": "admin"}),
        ("DELETE", f"{base}/members/{account.user.id}", None),
        ("DELETE", base, None),
    ]:
        resp = await client.request(method, path, json=body, headers=admin.headers)
        assert resp.status == 403, (method, path, await resp.text())
    resp = await client.delete(f"{base}/members/{someone.user.id}", headers=admin.headers)
    assert resp.status == 200
    assert await roles(client, account, team["id"]) == {
        str(account.user.id): "owner",
        str(admin.user.id): "admin",
    }
    resp = await client.get(base, headers=someone.headers)
    assert resp.status == 404  # removed: the team is gone for them


async def test_the_last_owner_can_neither_leave_nor_be_demoted(
    client: TestClient, account: Account, other_account: Account
) -> None:
    team = await new_team(client, account, members={"admin": other_account})
    me = f"/api/teams/{team['id']}/members/{account.user.id}"
    for method, body in [("DELETE", None), ("PATCH", {"role": "admin"})]:
        resp = await client.request(method, me, json=body, headers=account.headers)
        assert resp.status == 409, await resp.text()
        data = await resp.json()
        assert_error(data, "LAST_OWNER")
        assert "another member owner" in data["error"]
    # with a second owner, the first may step down and then leave
    them = f"/api/teams/{team['id']}/members/{other_account.user.id}"
    assert (await client.patch(them, json={"role": "owner"}, headers=account.headers)).status == 200
    assert (await client.patch(me, json={"role": "viewer"}, headers=account.headers)).status == 200
    assert (await client.delete(me, headers=account.headers)).status == 200
    assert await roles(client, other_account, team["id"]) == {str(other_account.user.id): "owner"}


async def test_two_owners_stepping_down_at_once_leave_one_owner(
    client: TestClient, account: Account, other_account: Account
) -> None:
    team = await new_team(client, account, members={"owner": other_account})
    answers = await asyncio.gather(
        *(
            client.patch(
                f"/api/teams/{team['id']}/members/{a.user.id}", json={"role": "admin"}, headers=a.headers
            )
            for a in (account, other_account)
        )
    )
    assert sorted(r.status for r in answers) == [200, 409]
    assert sorted((await roles(client, account, team["id"])).values()) == ["admin", "owner"]


async def test_any_member_may_leave(client: TestClient, account: Account, other_account: Account) -> None:
    team = await new_team(client, account, members={"viewer": other_account})
    resp = await client.delete(
        f"/api/teams/{team['id']}/members/{other_account.user.id}", headers=other_account.headers
    )
    assert resp.status == 200
    assert await roles(client, account, team["id"]) == {str(account.user.id): "owner"}


async def test_only_an_owner_deletes_and_never_a_personal_team(
    client: TestClient, account: Account, other_account: Account
) -> None:
    mine = await personal_team(client, account)
    resp = await client.delete(f"/api/teams/{mine['id']}", headers=account.headers)
    assert resp.status == 409
    assert_error(await resp.json(), "PERSONAL_TEAM")
    team = await new_team(client, account, members={"admin": other_account})
    assert (await client.delete(f"/api/teams/{team['id']}", headers=other_account.headers)).status == 403
    resp = await client.delete(f"/api/teams/{team['id']}", headers=account.headers)
    assert resp.status == 200 and (await resp.json())["deleted"] == team["id"]
    assert (await client.get(f"/api/teams/{team['id']}", headers=account.headers)).status == 404


async def test_a_personal_team_keeps_its_user_as_owner(
    client: TestClient, account: Account, other_account: Account
) -> None:
    mine = await personal_team(client, account)
    await add_member(client, account, mine["id"], other_account, "owner")
    me = f"/api/teams/{mine['id']}/members/{account.user.id}"
    for method, body in [("PATCH", {"role": "viewer"}), ("DELETE", None)]:
        for who in (account, other_account):
            resp = await client.request(method, me, json=body, headers=who.headers)
            assert resp.status == 409, await resp.text()
            assert_error(await resp.json(), "PERSONAL_TEAM")


async def test_bad_input_is_a_400_naming_the_field(client: TestClient, account: Account) -> None:
    team = await new_team(client, account)
    base = f"/api/teams/{team['id']}"
    for method, path, body, field in [
        ("POST", "/api/teams", {}, "name"),
        ("POST", "/api/teams", {"name": "  "}, "name"),
        ("POST", "/api/teams", {"name": "ok", "owner": "x"}, "owner"),
        ("POST", f"{base}/members", {"email": "not-an-address"}, "email"),
        ("POST", f"{base}/members", {"email": "a@example.com", "role": "boss"}, "role"),
        ("PATCH", f"{base}/members/{account.user.id}", {}, "role"),
    ]:
        resp = await client.request(method, path, json=body, headers=account.headers)
        assert resp.status == 400, (method, path, body, await resp.text())
        data = await resp.json()
        assert data["success"] is False and field in data["error"], data
    resp = await client.patch(f"{base}/members/not-a-uuid", json={"role": "viewer"}, headers=account.headers)
    assert resp.status == 404
