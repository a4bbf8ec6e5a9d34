"""Teams through the API: ``new_team(client, owner, **members)`` makes a shared team of ``owner``
and adds each member (an Account) with its role; ``personal_team(client, account)`` is the
account's own team."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient

from tests.support.factories import Account


async def new_team(
    client: TestClient, owner: Account, name: str = "Platform", members: dict[str, Account] | None = None
) -> dict[str, Any]:
    """A shared team of ``owner``; ``members`` maps a role to the Account that gets it."""
    resp = await client.post("/api/teams", json={"name": name}, headers=owner.headers)
    assert resp.status == 201, await resp.text()
    team = (await resp.json())["team"]
    for role, member in (members or {}).items():
        await add_member(client, owner, team["id"], member, role)
    return team


async def add_member(client: TestClient, actor: Account, team_id: str, member: Account, role: str) -> None:
    resp = await client.post(
        f"/api/teams/{team_id}/members",
        json={"email": member.user.email, "role": role},
        headers=actor.headers,
    )
    assert resp.status == 201, await resp.text()


async def personal_team(client: TestClient, account: Account) -> dict[str, Any]:
    listing = await (await client.get("/api/teams", headers=account.headers)).json()
    return next(team for team in listing["teams"] if team["personal"])


async def roles(client: TestClient, account: Account, team_id: str) -> dict[str, str]:
    """user id -> role, as a member reads the team's members."""
    resp = await client.get(f"/api/teams/{team_id}/members", headers=account.headers)
    assert resp.status == 200, await resp.text()
    return {m["user_id"]: m["role"] for m in (await resp.json())["members"]}
