"""Accounts and web sessions as a browser and an operator meet them."""

from __future__ import annotations

import asyncpg
from aiohttp.test_utils import TestClient
from arq.connections import ArqRedis

from engine.auth import accounts
from engine.settings import Settings
from tests.support.factories import FULL, assert_error, make_client
from tests.support.sessions import PASSWORD, WebUser, log_in, web_user


async def test_login_cookie_csrf_webhook_logout(client: TestClient, pool: asyncpg.Pool) -> None:
    """The issue's walk: login → cookie → create with the CSRF header works, without it 403, logout → 401."""
    who = await web_user(pool)
    resp = await client.post("/api/auth/login", json={"email": who.email, "password": PASSWORD})
    assert resp.status == 200
    data = await resp.json()
    csrf = data["csrf_token"]
    assert data["user"]["email"] == who.email
    cookie = resp.headers["Set-Cookie"]
    assert cookie.startswith("monoduty_session=")
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/" in cookie
    assert "Secure" not in cookie  # plain HTTP here; see test_https for the Secure flag

    resp = await client.post("/api/webhooks", json=FULL, headers={"X-CSRF-Token": csrf})
    assert resp.status == 201, await resp.text()
    resp = await client.post("/api/webhooks", json=FULL)
    assert resp.status == 403
    assert_error(await resp.json(), "CSRF_FAILED")
    resp = await client.post("/api/webhooks", json=FULL, headers={"X-CSRF-Token": csrf + "x"})
    assert resp.status == 403
    listing = await (await client.get("/api/webhooks")).json()  # reads need no token
    assert listing["total"] == 1

    resp = await client.post("/api/auth/logout", headers={"X-CSRF-Token": csrf})
    assert resp.status == 200
    resp = await client.get("/api/webhooks")
    assert resp.status == 401


async def test_logged_out_cookie_replayed_is_refused(client: TestClient, pool: asyncpg.Pool) -> None:
    who = await web_user(pool)
    csrf = await log_in(client, who)
    stolen = {c.key: c.value for c in client.session.cookie_jar}["monoduty_session"]
    await client.post("/api/auth/logout", headers={"X-CSRF-Token": csrf})
    client.session.cookie_jar.clear()
    resp = await client.get("/api/auth/me", headers={"Cookie": f"monoduty_session={stolen}"})
    assert resp.status == 401
    assert_error(await resp.json(), "SESSION_EXPIRED")


async def test_foreign_origin_is_refused_even_with_the_token(client: TestClient, pool: asyncpg.Pool) -> None:
    who = await web_user(pool)
    csrf = await log_in(client, who)
    headers = {"X-CSRF-Token": csrf, "Origin": "https://evil.example"}
    resp = await client.post("/api/webhooks", json=FULL, headers=headers)
    assert resp.status == 403
    assert_error(await resp.json(), "ORIGIN_REFUSED")
    own = {"X-CSRF-Token": csrf, "Origin": f"http://{client.host}:{client.port}"}
    assert (await client.post("/api/webhooks", json=FULL, headers=own)).status == 201
    public = {"X-CSRF-Token": csrf, "Origin": "http://monoduty.test"}  # settings.public_url
    assert (await client.post("/api/webhooks", json=FULL, headers=public)).status == 201
    # login from another site's page is refused too (login CSRF)
    resp = await client.post(
        "/api/auth/login",
        json={"email": who.email, "password": PASSWORD},
        headers={"Origin": "https://evil.example"},
    )
    assert resp.status == 403


async def test_each_login_is_a_new_session(client: TestClient, pool: asyncpg.Pool) -> None:
    who = await web_user(pool)
    await log_in(client, who)
    first = {c.key: c.value for c in client.session.cookie_jar}["monoduty_session"]
    await log_in(client, who)
    second = {c.key: c.value for c in client.session.cookie_jar}["monoduty_session"]
    assert first != second
    client.session.cookie_jar.clear()
    resp = await client.get("/api/auth/me", headers={"Cookie": f"monoduty_session={first}"})
    assert resp.status == 401  # the session a login replaced is gone (no fixation)


async def test_unknown_email_and_wrong_password_answer_alike(client: TestClient, pool: asyncpg.Pool) -> None:
    who = await web_user(pool)
    wrong = await client.post("/api/auth/login", json={"email": who.email, "password": "not it at all"})
    unknown = await client.post("/api/auth/login", json={"email": "nobody@example.com", "password": PASSWORD})
    assert wrong.status == unknown.status == 401
    a, b = await wrong.json(), await unknown.json()
    assert (a["code"], a["error"]) == (b["code"], b["error"]) == ("INVALID_CREDENTIALS", a["error"])
    assert "Set-Cookie" not in wrong.headers


async def test_repeated_failures_are_throttled(client: TestClient, pool: asyncpg.Pool) -> None:
    who = await web_user(pool)
    statuses = []
    for _ in range(accounts.MAX_FAILURES + 1):
        resp = await client.post("/api/auth/login", json={"email": who.email, "password": "wrong-password"})
        statuses.append(resp.status)
    assert statuses == [401] * accounts.MAX_FAILURES + [429]
    assert int(resp.headers["Retry-After"]) > 0
    assert_error(await resp.json(), "LOGIN_THROTTLED")
    # even the right password waits now: the throttle is checked before the password
    resp = await client.post("/api/auth/login", json={"email": who.email, "password": PASSWORD})
    assert resp.status == 429


async def test_key_only_user_cannot_log_in(client: TestClient, account) -> None:  # type: ignore[no-untyped-def]
    resp = await client.post(
        "/api/auth/login", json={"email": account.user.email, "password": "anything at all"}
    )
    assert resp.status == 401


async def test_register_is_switched_by_allow_signup(settings: Settings, redis: ArqRedis) -> None:
    body = {
        "email": "new@example.com",
        "password": "a long enough password",
        "name": "New",
        "phone": "+1 415 555 0199",
    }
    closed = await make_client(settings.with_(allow_signup=False))
    try:
        resp = await closed.post("/api/auth/register", json=body)
        assert resp.status == 403
        assert_error(await resp.json(), "SIGNUP_DISABLED")
    finally:
        await closed.close()
    open_ = await make_client(settings.with_(allow_signup=True))
    try:
        resp = await open_.post("/api/auth/register", json=body)
        assert resp.status == 201, await resp.text()
        data = await resp.json()
        assert data["user"]["phone"] == "+14155550199"
        assert data["csrf_token"]
        me = await (await open_.get("/api/auth/me")).json()  # registered and logged in
        assert me["user"]["email"] == "new@example.com"
        again = await open_.post("/api/auth/register", json={**body, "email": "NEW@example.com"})
        assert again.status == 409
        for bad, field in [
            ({**body, "password": "short"}, "password"),
            ({**body, "email": "not-an-email"}, "email"),
            ({**body, "phone": "12"}, "phone"),
            ({**body, "role": "admin"}, "role"),
            ({k: v for k, v in body.items() if k != "password"}, "password"),
        ]:
            resp = await open_.post("/api/auth/register", json=bad)
            assert resp.status == 400, bad
            assert field in (await resp.json())["error"]
    finally:
        await open_.close()


async def test_me_shows_and_changes_default_contacts(client: TestClient, pool: asyncpg.Pool) -> None:
    who = await web_user(pool)
    csrf = await log_in(client, who)
    me = (await (await client.get("/api/auth/me")).json())["user"]
    assert me["default_targets"] == {
        "email": who.email,
        "sms": "+14155550111",
        "push": None,
        "call": "+14155550111",
    }
    resp = await client.patch(
        "/api/auth/me",
        json={"name": "Ops", "phone": None, "pushTopic": "ops-alerts"},
        headers={"X-CSRF-Token": csrf},
    )
    assert resp.status == 200, await resp.text()
    me = (await resp.json())["user"]
    assert (me["name"], me["phone"], me["push_topic"]) == ("Ops", None, "ops-alerts")
    assert me["default_targets"]["push"] == "ops-alerts"
    # a webhook without push targets now goes to the new topic
    webhook = await client.post(
        "/api/webhooks",
        json={"name": "Mine", "notificationTypes": ["PUSH_NOTIF"]},
        headers={"X-CSRF-Token": csrf},
    )
    assert (await webhook.json())["webhook"]["target_channels"]["push"] == ["ops-alerts"]
    for bad in ({"pushTopic": "bad topic!"}, {"email": "x"}, {"admin": True}, {"name": "x" * 101}):
        resp = await client.patch("/api/auth/me", json=bad, headers={"X-CSRF-Token": csrf})
        assert resp.status == 400, bad
    other = await web_user(pool)
    resp = await client.patch("/api/auth/me", json={"email": other.email}, headers={"X-CSRF-Token": csrf})
    assert resp.status == 409


async def test_password_change_ends_other_sessions(
    settings: Settings, client: TestClient, pool: asyncpg.Pool
) -> None:
    who = await web_user(pool)
    csrf = await log_in(client, who)
    laptop = await make_client(settings)
    try:
        await log_in(laptop, who)
        resp = await client.post(
            "/api/auth/password",
            json={"currentPassword": "wrong password", "newPassword": "a brand new password"},
            headers={"X-CSRF-Token": csrf},
        )
        assert resp.status == 400
        resp = await client.post(
            "/api/auth/password",
            json={"currentPassword": PASSWORD, "newPassword": "a brand new password"},
            headers={"X-CSRF-Token": csrf},
        )
        assert resp.status == 200
        assert (await client.get("/api/auth/me")).status == 200  # this session stays
        assert (await laptop.get("/api/auth/me")).status == 401  # the other one ended
        old = await laptop.post("/api/auth/login", json={"email": who.email, "password": PASSWORD})
        assert old.status == 401
        await log_in(laptop, WebUser(who.user, "a brand new password"))
    finally:
        await laptop.close()


async def test_an_api_key_works_on_auth_routes_without_csrf(client: TestClient, account) -> None:  # type: ignore[no-untyped-def]
    me = await client.get("/api/auth/me", headers=account.headers)
    assert (await me.json())["user"]["email"] == account.user.email
    assert "csrf_token" not in await me.json()
    resp = await client.patch("/api/auth/me", json={"name": "Bot"}, headers=account.headers)
    assert resp.status == 200
    # a key-only user may set a first password without a current one
    resp = await client.post(
        "/api/auth/password", json={"newPassword": "first password here"}, headers=account.headers
    )
    assert resp.status == 200
    login = await client.post(
        "/api/auth/login", json={"email": account.user.email, "password": "first password here"}
    )
    assert login.status == 200


async def test_login_and_password_change_refuse_what_the_spec_refuses(client: TestClient, account) -> None:  # type: ignore[no-untyped-def]
    # Unknown fields are refused on every body (api/openapi.yaml: additionalProperties false).
    who = {"email": account.user.email, "password": "anything at all"}
    resp = await client.post("/api/auth/login", json={**who, "remember": True})
    assert resp.status == 400
    assert_error(await resp.json(), "VALIDATION_ERROR")
    # currentPassword must be a string even while no password is set yet; nothing is changed.
    resp = await client.post(
        "/api/auth/password",
        json={"currentPassword": 12345678, "newPassword": "first password here"},
        headers=account.headers,
    )
    assert resp.status == 400
    assert_error(await resp.json(), "VALIDATION_ERROR")
    login = await client.post(
        "/api/auth/login", json={"email": account.user.email, "password": "first password here"}
    )
    assert login.status == 401


async def test_time_zone_is_saved_read_back_refused_when_unknown_and_cleared(
    client: TestClient, account
) -> None:  # type: ignore[no-untyped-def]
    me = (await (await client.get("/api/auth/me", headers=account.headers)).json())["user"]
    assert me["time_zone"] is None  # a new user's pages use the browser's zone
    resp = await client.patch("/api/auth/me", json={"timeZone": "Asia/Tokyo"}, headers=account.headers)
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["user"]["time_zone"] == "Asia/Tokyo"
    me = (await (await client.get("/api/auth/me", headers=account.headers)).json())["user"]
    assert me["time_zone"] == "Asia/Tokyo"
    for bad in ("Mars/Olympus", "", 3):
        resp = await client.patch("/api/auth/me", json={"timeZone": bad}, headers=account.headers)
        assert resp.status == 400, bad
        body = await resp.json()
        assert_error(body, "VALIDATION_ERROR")
        assert body["error"].startswith("timeZone "), body
    # a change of another field keeps the zone; null clears it
    resp = await client.patch("/api/auth/me", json={"name": "Kei"}, headers=account.headers)
    assert (await resp.json())["user"]["time_zone"] == "Asia/Tokyo"
    resp = await client.patch("/api/auth/me", json={"timeZone": None}, headers=account.headers)
    assert (await resp.json())["user"]["time_zone"] is None
    me = (await (await client.get("/api/auth/me", headers=account.headers)).json())["user"]
    assert me["time_zone"] is None
