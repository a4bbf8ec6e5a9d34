"""Inviting by email: a new user with no password and a one-time set-password link (API, page and
CLI), which works once, expires, and never resets a password someone already set."""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from engine.teams import invites
from tests.support.factories import Account, assert_error
from tests.support.processes import monoduty, monoduty_env
from tests.support.services import Services
from tests.support.teams import new_team, roles

PASSWORD = "a long invited password"


def _email() -> str:
    return f"invitee-{uuid.uuid4().hex[:10]}@example.com"


async def _invite(client: TestClient, account: Account, email: str, role: str = "responder") -> dict:
    team = await new_team(client, account)
    resp = await client.post(
        f"/api/teams/{team['id']}/members", json={"email": email, "role": role}, headers=account.headers
    )
    assert resp.status == 201, await resp.text()
    answer = await resp.json()
    return {**answer, "team": team}


async def test_an_invite_link_sets_a_password_once_and_then_logs_in(
    client: TestClient, account: Account, pool: asyncpg.Pool
) -> None:
    email = _email()
    answer = await _invite(client, account, email)
    invite = answer["invite"]
    assert answer["member"]["email"] == email and answer["member"]["role"] == "responder"
    assert invite["url"] == f"http://monoduty.test/invite/{invite['token']}"
    expires = datetime.fromisoformat(invite["expires_at"].replace("Z", "+00:00"))
    assert timedelta(days=6, hours=23) < expires - datetime.now(UTC) <= timedelta(days=7)
    async with pool.acquire() as conn:  # only a hash is kept
        stored = await conn.fetchval(
            "SELECT token_hash FROM invites i JOIN users u ON u.id = i.user_id WHERE u.email = $1", email
        )
    assert stored == hashlib.sha256(invite["token"].encode()).digest()

    # before: no password, so no login
    resp = await client.post("/api/auth/login", json={"email": email, "password": PASSWORD})
    assert resp.status == 401
    resp = await client.post("/api/auth/set-password", json={"token": invite["token"], "password": PASSWORD})
    assert resp.status == 200, await resp.text()
    data = await resp.json()
    assert data["user"]["email"] == email and data["csrf_token"]
    me = await (await client.get("/api/auth/me")).json()  # the answer's cookie is a session
    assert me["user"]["email"] == email
    teams = await (await client.get("/api/teams")).json()
    assert {t["id"]: t["role"] for t in teams["teams"] if not t["personal"]} == {
        answer["team"]["id"]: "responder"
    }

    again = await client.post(
        "/api/auth/set-password", json={"token": invite["token"], "password": "another one!"}
    )
    assert again.status == 400
    assert_error(await again.json(), "INVALID_INVITE")
    client.session.cookie_jar.clear()
    resp = await client.post("/api/auth/login", json={"email": email, "password": PASSWORD})
    assert resp.status == 200


async def test_an_existing_user_joins_without_a_link(
    client: TestClient, account: Account, other_account: Account
) -> None:
    answer = await _invite(client, account, other_account.user.email.upper())
    assert answer["invite"] is None
    assert answer["member"]["user_id"] == str(other_account.user.id)


async def test_a_weak_password_keeps_the_link_and_a_wrong_token_says_nothing(
    client: TestClient, account: Account
) -> None:
    invite = (await _invite(client, account, _email()))["invite"]
    resp = await client.post("/api/auth/set-password", json={"token": invite["token"], "password": "short"})
    assert resp.status == 400 and (await resp.json())["code"] == "WEAK_PASSWORD"
    for token in ["mdi_made-up", invite["token"] + "x", ""]:
        resp = await client.post("/api/auth/set-password", json={"token": token, "password": PASSWORD})
        assert resp.status == 400
        data = await resp.json()
        assert data["code"] in ("INVALID_INVITE", "VALIDATION_ERROR") and invite["token"] not in data["error"]
    resp = await client.post("/api/auth/set-password", json={"token": invite["token"], "password": PASSWORD})
    assert resp.status == 200


async def test_a_link_expires_and_never_overwrites_a_password(
    client: TestClient, account: Account, pool: asyncpg.Pool
) -> None:
    email = _email()
    answer = await _invite(client, account, email)
    user_id = uuid.UUID(answer["member"]["user_id"])
    body = {"token": answer["invite"]["token"], "password": PASSWORD}
    async with pool.acquire() as conn:
        later = datetime.now(UTC) + invites.TTL + timedelta(seconds=1)
        with pytest.raises(invites.InvalidInvite):
            await invites.accept_invite(conn, invites.Acceptance(**body), later)
        # a fresh link, then a password set some other way: the link is dead
        fresh = await invites.create_invite(
            conn, user_id, team_id=None, invited_by=None, now=datetime.now(UTC)
        )
        await conn.execute("UPDATE users SET password_hash = 'set elsewhere' WHERE id = $1", user_id)
        resp = await client.post("/api/auth/set-password", json={"token": fresh.token, "password": PASSWORD})
        assert resp.status == 400
        assert (
            await conn.fetchval("SELECT password_hash FROM users WHERE id = $1", user_id) == "set elsewhere"
        )
    # and the first link was replaced by the fresh one
    resp = await client.post("/api/auth/set-password", json=body)
    assert resp.status == 400


async def test_only_an_owner_invites_an_owner(
    client: TestClient, account: Account, other_account: Account
) -> None:
    team = await new_team(client, account, members={"admin": other_account})
    resp = await client.post(
        f"/api/teams/{team['id']}/members",
        json={"email": _email(), "role": "owner"},
        headers=other_account.headers,
    )
    assert resp.status == 403
    assert_error(await resp.json(), "INSUFFICIENT_PERMISSIONS")


async def test_the_invite_page_shows_a_form_and_sets_the_password(
    client: TestClient, account: Account
) -> None:
    email = _email()
    invite = (await _invite(client, account, email))["invite"]
    path = invite["url"].removeprefix("http://monoduty.test")
    page = await client.get(path)
    assert page.status == 200 and page.headers["Cache-Control"] == "no-store"
    assert '<form method="post">' in await page.text()
    short = await client.post(path, data={"password": "short"})
    assert short.status == 200 and "at least" in await short.text()
    done = await client.post(path, data={"password": PASSWORD})
    assert done.status == 200 and email in await done.text()
    spent = await client.post(path, data={"password": PASSWORD})
    assert spent.status == 200 and "no longer valid" in await spent.text()
    resp = await client.post("/api/auth/login", json={"email": email, "password": PASSWORD})
    assert resp.status == 200


@pytest.mark.slow  # over 5 s: run with the slow tests
async def test_users_invite_prints_a_link_that_works(
    services: Services, client: TestClient, account: Account
) -> None:
    team = await new_team(client, account, name=f"cli-{uuid.uuid4().hex[:8]}")
    env = monoduty_env(
        MONODUTY_DATABASE_URL=services.database_url, MONODUTY_PUBLIC_URL="http://monoduty.test"
    )
    email = _email()
    args = ("users", "invite", "--team", team["name"], "--email", email, "--role", "viewer", "--json")
    made = monoduty(*args, env=env, check=False)
    assert made.returncode == 0, made.stderr
    first = json.loads(made.stdout)
    assert (first["team_id"], first["email"], first["role"]) == (team["id"], email, "viewer")
    assert first["invite_url"].startswith("http://monoduty.test/invite/mdi_")
    # run again (the link got lost): a new link, the old one replaced, the membership unchanged
    second = json.loads(monoduty(*args, env=env).stdout)
    assert second["invite_url"] != first["invite_url"]
    token = second["invite_url"].rsplit("/", 1)[1]
    resp = await client.post("/api/auth/set-password", json={"token": token, "password": PASSWORD})
    assert resp.status == 200
    assert (await roles(client, account, team["id"]))[first["user_id"]] == "viewer"
    # with a password set, no link is printed
    plain = monoduty("users", "invite", "--team", team["id"], "--email", email, env=env).stdout
    assert "no link needed" in plain and "/invite/" not in plain
    unknown = monoduty("users", "invite", "--team", "no such team", "--email", email, env=env, check=False)
    assert unknown.returncode == 1 and unknown.stderr.strip() == "monoduty: team not found"
