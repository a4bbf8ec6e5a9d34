"""The Team page over HTTP: members and roles; an admin invites (a new address gets a one-time
set-password link, shown once), changes a role and removes a member after a confirmation; a
member below admin sees the team and the server refuses their changes, whatever they post."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from urllib.parse import urlsplit

import asyncpg
from aiohttp.test_utils import TestClient

from engine.teams.members import MemberInput, TeamInput, add_member, create_team
from tests.support.html_text import field_error, text_of
from tests.support.sessions import WebUser, log_in, web_user

NOW = datetime(2026, 3, 10, 15, 0, tzinfo=UTC)


async def roles(pool: asyncpg.Pool, team: uuid.UUID) -> dict[str, str]:
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT u.email, m.role FROM team_members m JOIN users u ON u.id = m.user_id"
            " WHERE m.team_id = $1",
            team,
        )
    return {r["email"]: r["role"] for r in rows}


async def shared_team(pool: asyncpg.Pool, owner: WebUser, *members: tuple[WebUser, str]) -> uuid.UUID:
    async with pool.acquire() as conn:
        team = await create_team(conn, owner.user.id, TeamInput(name="Platform"))
        for who, role in members:
            await add_member(conn, owner.user.id, team["id"], MemberInput(email=who.email, role=role), NOW)
    return team["id"]


async def test_an_admin_invites_changes_a_role_and_removes(client: TestClient, pool: asyncpg.Pool) -> None:
    owner, carol = await web_user(pool), await web_user(pool)
    team = await shared_team(pool, owner, (carol, "viewer"))
    csrf = await log_in(client, owner)
    page = text_of(await (await client.get(f"/team?team={team}")).text())
    assert "Team: Platform" in page and "Your role: Owner" in page and carol.email in page

    # an address that is not an email: the engine's error at the field
    resp = await client.post(
        f"/team/{team}/members", data={"csrf_token": csrf, "email": "nobody", "role": "viewer"}
    )
    assert resp.status == 400
    assert field_error(await resp.text(), "email").startswith("Email ")

    # a new address: a user with a set-password link, shown on this answer only
    new = f"dana-{uuid.uuid4().hex[:6]}@example.com"
    resp = await client.post(
        f"/team/{team}/members", data={"csrf_token": csrf, "email": new, "role": "responder"}
    )
    assert resp.status == 200 and resp.headers["Cache-Control"] == "no-store"
    html = await resp.text()
    link = re.search(r'id="invite-url" type="text" readonly value="([^"]+)"', html).group(1)
    assert re.fullmatch(r"http://[^/]+/invite/mdi_[\w-]+", link), link
    assert (await roles(pool, team))[new] == "responder"
    assert "/invite/mdi_" not in await (await client.get(f"/team?team={team}")).text()
    invite_page = await client.get(urlsplit(link).path)
    assert invite_page.status == 200  # the link works (the invite page asks for a password)

    # change Carol's role; remove her after the confirmation that names her
    resp = await client.post(
        f"/team/{team}/members/{carol.user.id}/role",
        data={"csrf_token": csrf, "role": "admin"},
        allow_redirects=False,
    )
    assert resp.status == 303
    assert "Role changed." in text_of(await (await client.get(resp.headers["Location"])).text())
    assert (await roles(pool, team))[carol.email] == "admin"
    confirm = text_of(await (await client.get(f"/team/{team}/members/{carol.user.id}/remove")).text())
    assert f"Remove {carol.user.name or carol.email} from Platform?" in confirm
    resp = await client.post(
        f"/team/{team}/members/{carol.user.id}/remove", data={"csrf_token": csrf}, allow_redirects=False
    )
    assert resp.status == 303
    assert carol.email not in await roles(pool, team)


async def test_a_non_admin_sees_the_team_but_cannot_change_it(client: TestClient, pool: asyncpg.Pool) -> None:
    owner, viewer, responder = await web_user(pool), await web_user(pool), await web_user(pool)
    team = await shared_team(pool, owner, (viewer, "viewer"), (responder, "responder"))
    before = await roles(pool, team)
    for who in (viewer, responder):
        client.session.cookie_jar.clear()
        csrf = await log_in(client, who)
        html = await (await client.get(f"/team?team={team}")).text()
        page = text_of(html)
        assert owner.email in page and viewer.email in page and responder.email in page
        assert "only its admins and owners invite" in page
        assert f'action="/team/{team}/members"' not in html and "/role" not in html and "/remove" not in html
        # the server refuses what the page does not offer
        other = responder if who is viewer else viewer
        attempts = [
            (f"/team/{team}/members", {"email": "mallory@example.com", "role": "admin"}),
            (f"/team/{team}/members/{who.user.id}/role", {"role": "owner"}),
            (f"/team/{team}/members/{other.user.id}/role", {"role": "admin"}),
            (f"/team/{team}/members/{owner.user.id}/remove", {}),
        ]
        for path, data in attempts:
            resp = await client.post(path, data={"csrf_token": csrf, **data})
            assert resp.status == 403, path
            assert "Not allowed" in await resp.text()
        assert await roles(pool, team) == before
    # and a stranger to the team is told it does not exist
    client.session.cookie_jar.clear()
    stranger = await web_user(pool)
    csrf = await log_in(client, stranger)
    assert (await client.get(f"/team?team={team}")).status == 404
    resp = await client.post(f"/team/{team}/members/{owner.user.id}/remove", data={"csrf_token": csrf})
    assert resp.status == 404
    assert await roles(pool, team) == before


async def test_an_admin_cannot_make_an_owner(client: TestClient, pool: asyncpg.Pool) -> None:
    owner, admin, carol = await web_user(pool), await web_user(pool), await web_user(pool)
    team = await shared_team(pool, owner, (admin, "admin"), (carol, "viewer"))
    csrf = await log_in(client, admin)
    html = await (await client.get(f"/team?team={team}")).text()
    assert '<option value="owner"' not in html  # not offered
    assert f"/team/{team}/members/{owner.user.id}/role" not in html
    resp = await client.post(
        f"/team/{team}/members/{carol.user.id}/role", data={"csrf_token": csrf, "role": "owner"}
    )
    assert resp.status == 403
    assert (await roles(pool, team))[carol.email] == "viewer"
