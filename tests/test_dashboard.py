"""The dashboard over HTTP, as a browser would ask for it (no browser here: that is
tests/test_dashboard_browser.py): who may see what, the session and CSRF rules it shares with
/api, the headers on every answer, the one-time login link, the live event stream."""

from __future__ import annotations

import asyncio
import hashlib
import re
import uuid
from urllib.parse import parse_qs, urlsplit

import asyncpg
from aiohttp.test_utils import TestClient
from arq.connections import ArqRedis

from api.dashboard.guard import PUBLIC, ROUTE_PREFIX
from engine.auth import sessions
from engine.settings import Settings
from tests.support.factories import Account, make_client, run_worker, send_alert
from tests.support.processes import wait_until
from tests.support.sessions import WebUser, log_in, web_user

HTML = "text/html"


def dashboard_routes(client: TestClient) -> list[tuple[str, str, str]]:
    """(method, path pattern, route name) of every dashboard route but the public ones."""
    return [
        (route.method, route.resource.canonical, route.name or "")
        for route in client.app.router.routes()
        if route.resource is not None
        and (route.name or "").startswith(ROUTE_PREFIX)
        and route.name not in PUBLIC
        and route.method != "HEAD"
    ]


def example_path(pattern: str) -> str:
    path = pattern.replace("{action}", "acknowledge")
    return re.sub(r"\{\w+\}", str(uuid.uuid4()), path)


async def sign_in(client: TestClient, who: WebUser) -> str:
    """Sign in through the dashboard's form; returns the session's CSRF token (from a page)."""
    resp = await client.post(
        "/sign-in", data={"email": who.email, "password": who.password, "next": "/"}, allow_redirects=False
    )
    assert resp.status == 303, await resp.text()
    assert resp.headers["Location"] == "/"
    page = await (await client.get("/")).text()
    match = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert match, page
    return match.group(1)


async def incident_of(client: TestClient, account: Account, settings: Settings, **alert: object) -> dict:
    """A webhook of ``account``'s, one alert to it (processed by a real worker): its incident."""
    webhook, _ = await send_alert(client, account)
    if alert:
        resp = await client.post(webhook["webhook_url"].removeprefix("http://monoduty.test"), json=alert)
        assert resp.status == 202
    await run_worker(settings)
    resp = await client.get("/api/incidents", params={"webhook": webhook["id"]}, headers=account.headers)
    return (await resp.json())["incidents"][0]


async def test_every_dashboard_page_sends_a_stranger_to_sign_in(client: TestClient) -> None:
    routes = dashboard_routes(client)
    assert {"/", "/incidents/{id}", "/webhooks", "/webhooks/new", "/events"} <= {p for _, p, _ in routes}
    for method, pattern, _ in routes:
        path = example_path(pattern.replace("{id:[0-9a-fA-F-]{36}}", "{id}"))
        for cookies in ({}, {"monoduty_session": "forged-session-id-0123456789"}):
            client.session.cookie_jar.clear()
            client.session.cookie_jar.update_cookies(cookies)
            resp = await client.request(method, path, allow_redirects=False)
            assert resp.status == 303, f"{method} {pattern}: {resp.status}"
            location = urlsplit(resp.headers["Location"])
            assert location.path == "/sign-in"
            query = parse_qs(location.query)
            if method == "GET":
                assert query["next"] == [path]
            # a form was on a signed-in page: its session ended; a bare visit is just not signed in
            assert query.get("reason") == (["ended"] if cookies or method != "GET" else None)


async def test_signing_in_shows_the_pages_with_strict_headers(client: TestClient, pool: asyncpg.Pool) -> None:
    who = await web_user(pool)
    await sign_in(client, who)
    for path in ("/", "/webhooks", "/webhooks/new", "/?status=all"):
        resp = await client.get(path)
        assert resp.status == 200, path
        assert resp.content_type == HTML
        csp = resp.headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
        assert resp.headers["Cache-Control"] == "no-store"
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        page = await resp.text()
        scripts = re.findall(r"<script([^>]*)>(.*?)</script>", page, flags=re.S)
        assert scripts and all('src="/static/' in attrs and not body.strip() for attrs, body in scripts)
    cookie = next(c for c in client.session.cookie_jar if c.key == "monoduty_session")
    assert cookie["httponly"] is True


async def test_assets_have_hashed_names_and_a_long_cache(client: TestClient, pool: asyncpg.Pool) -> None:
    page = await (await client.get("/sign-in")).text()
    urls = re.findall(r'(?:src|href)="(/static/[^"]+)"', page)
    assert len(urls) == 5  # the stylesheet, htmx, its SSE extension, our script, the viewer's zone
    for url in urls:
        assert re.fullmatch(r"/static/[\w.-]+\.[0-9a-f]{12}\.(css|js)", url), url
        resp = await client.get(url)
        assert resp.status == 200
        assert resp.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert (await client.get("/static/app.css")).status == 404  # only the current, hashed names
    assert (await client.get("/static/axe.min.js")).status == 404  # the tests' axe-core is not served


async def test_a_wrong_password_says_so_and_signs_nobody_in(client: TestClient, pool: asyncpg.Pool) -> None:
    who = await web_user(pool)
    resp = await client.post("/sign-in", data={"email": who.email, "password": "not it at all"})
    assert resp.status == 401
    assert "email or password is not right" in await resp.text()
    assert (await client.get("/", allow_redirects=False)).status == 303


async def test_a_post_without_the_csrf_token_changes_nothing(
    client: TestClient, pool: asyncpg.Pool, account: Account, settings: Settings
) -> None:
    incident = await incident_of(client, account, settings)
    who = await web_user(pool)
    async with pool.acquire() as conn:  # the web user joins the account's team, as a responder
        await conn.execute(
            "INSERT INTO team_members (team_id, user_id, role) VALUES ($1, $2, 'responder')",
            uuid.UUID(incident["team_id"]),
            who.user.id,
        )
    token = await sign_in(client, who)
    path = f"/incidents/{incident['id']}/acknowledge"
    for data in ({}, {"csrf_token": "wrong"}):
        resp = await client.post(path, data=data, allow_redirects=False)
        assert resp.status == 403 and resp.content_type == HTML
    other_site = await client.post(
        path, data={"csrf_token": token}, headers={"Origin": "https://evil.example"}, allow_redirects=False
    )
    assert other_site.status == 403
    detail = await client.get(f"/api/incidents/{incident['id']}", headers=account.headers)
    assert (await detail.json())["incident"]["status"] == "triggered"

    resp = await client.post(path, data={"csrf_token": token, "next": "/"}, allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"] == "/"
    detail = await client.get(f"/api/incidents/{incident['id']}", headers=account.headers)
    assert (await detail.json())["incident"]["status"] == "acknowledged"
    # htmx sends the token as the API's header instead
    resolve = await client.post(
        f"/incidents/{incident['id']}/resolve", headers={"X-CSRF-Token": token}, allow_redirects=False
    )
    assert resolve.status == 303 and resolve.headers["Location"] == f"/incidents/{incident['id']}"


async def test_an_ended_session_sends_the_next_action_to_sign_in_and_does_nothing(
    client: TestClient, pool: asyncpg.Pool, redis: ArqRedis, account: Account, settings: Settings
) -> None:
    incident = await incident_of(client, account, settings)
    csrf = await log_in(client, WebUser(account.user, await _password(pool, account)))
    page = f"/incidents/{incident['id']}"
    assert (await client.get(page)).status == 200
    await sessions.end_all(redis, account.user.id)  # signed out in another tab, or expired

    resp = await client.post(f"{page}/acknowledge", data={"csrf_token": csrf}, headers={"Referer": page})
    assert resp.url.path == "/sign-in"
    assert "Your session has ended" in await resp.text()
    assert parse_qs(resp.url.query_string)["next"] == [page]
    detail = await client.get(page.replace("/incidents", "/api/incidents"), headers=account.headers)
    assert (await detail.json())["incident"]["status"] == "triggered"
    fragment = await client.get(
        page, headers={"HX-Request": "true", "HX-Target": "incident-detail"}, allow_redirects=False
    )
    assert fragment.status == 401
    assert fragment.headers["HX-Redirect"].startswith("/sign-in?next=")


async def _password(pool: asyncpg.Pool, account: Account) -> str:
    from engine.auth.accounts import set_password

    async with pool.acquire() as conn:
        await set_password(conn, account.user.id, "a password long enough")
    return "a password long enough"


async def test_a_login_link_signs_in_once(client: TestClient, pool: asyncpg.Pool, redis: ArqRedis) -> None:
    who = await web_user(pool)
    token = await sessions.create_login_link(redis, who.user.id)
    key = sessions.LOGIN_LINK + hashlib.sha256(token.encode()).hexdigest()
    assert 0 < await redis.ttl(key) <= 15 * 60
    page = await client.get(f"/login/{token}")  # a mail scanner's GET spends nothing
    assert page.status == 200 and "Sign in to Monoduty" in await page.text()
    assert page.headers["Referrer-Policy"] == "same-origin"  # the token never reaches another site
    resp = await client.post(f"/login/{token}", allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"] == "/"
    home = await client.get("/")
    assert home.status == 200 and who.email in await home.text()

    client.session.cookie_jar.clear()
    again = await client.post(f"/login/{token}", allow_redirects=False)
    assert again.status == 400 and "used already or has expired" in await again.text()
    forged = await client.post(f"/login/mdl_{'A' * 43}", allow_redirects=False)
    assert forged.status == 400


async def test_sign_up_exists_only_when_open(settings: Settings, redis: ArqRedis) -> None:
    closed = await make_client(settings.with_(allow_signup=False))
    try:
        assert (await closed.get("/sign-up")).status == 404
        assert "Sign up" not in await (await closed.get("/sign-in")).text()
    finally:
        await closed.close()
    open_ = await make_client(settings.with_(allow_signup=True))
    try:
        email = f"new-{uuid.uuid4().hex[:8]}@example.com"
        short = await open_.post("/sign-up", data={"email": email, "password": "short"})
        assert short.status == 400 and 'id="password-error"' in await short.text()
        resp = await open_.post(
            "/sign-up", data={"email": email, "password": "long enough pass"}, allow_redirects=False
        )
        assert resp.status == 303
        assert email in await (await open_.get("/")).text()
    finally:
        await open_.close()


async def test_another_teams_incident_is_not_found(
    client: TestClient, pool: asyncpg.Pool, account: Account, settings: Settings
) -> None:
    incident = await incident_of(client, account, settings)
    csrf = await sign_in(client, await web_user(pool))
    resp = await client.get(f"/incidents/{incident['id']}")
    assert resp.status == 404 and resp.content_type == HTML
    assert "incident not found" in await resp.text()
    for action in ("acknowledge", "resolve", "escalate", "notes"):
        data = {"csrf_token": csrf, "text": "mine now"}
        resp = await client.post(f"/incidents/{incident['id']}/{action}", data=data)
        assert resp.status == 404, action
    assert (await client.get(f"/webhooks/{incident['webhook_id']}")).status == 404
    listing = await (await client.get("/?status=all")).text()
    assert incident["id"] not in listing
    assert incident["webhook_id"] not in await (await client.get("/webhooks")).text()
    detail = await client.get(f"/api/incidents/{incident['id']}", headers=account.headers)
    found = (await detail.json())["incident"]
    assert found["status"] == "triggered" and not [e for e in found["timeline"] if e["kind"] == "note"]


async def test_a_senders_markup_is_shown_as_text(
    client: TestClient, pool: asyncpg.Pool, account: Account, settings: Settings
) -> None:
    title = "<img src=x onerror=alert(1)>"
    webhook, _ = await send_alert(client, account)
    path = webhook["webhook_url"].removeprefix("http://monoduty.test")
    resp = await client.post(
        path, json={"title": title, "message": "<script>alert(2)</script>", "dedupKey": "x"}
    )
    assert resp.status == 202
    await run_worker(settings)
    await log_in(client, WebUser(account.user, await _password(pool, account)))
    listing = await (await client.get("/")).text()
    assert "&lt;img src=x onerror=alert(1)&gt;" in listing and "<img" not in listing
    found = await client.get("/api/incidents", params={"webhook": webhook["id"]}, headers=account.headers)
    xss = next(i for i in (await found.json())["incidents"] if i["title"] == title)
    detail = await (await client.get(f"/incidents/{xss['id']}")).text()
    assert "<img" not in detail and "<script>alert" not in detail
    assert "&lt;script&gt;alert(2)&lt;/script&gt;" in detail


async def test_the_webhook_form_shows_the_engines_error_at_its_field(
    client: TestClient, pool: asyncpg.Pool
) -> None:
    await sign_in(client, await web_user(pool))
    token = re.search(r'name="csrf_token" value="([^"]+)"', await (await client.get("/webhooks/new")).text())
    assert token
    form = {"csrf_token": token.group(1), "name": "Prod", "channel": "EMAIL", "target_email": "not-an-email"}
    resp = await client.post("/webhooks", data=form)
    assert resp.status == 400
    page = await resp.text()
    error = re.search(r'<p class="field-error" id="target_email-error">([^<]+)</p>', page)
    assert error and error.group(1).startswith("Email targets"), page
    assert 'aria-invalid="true"' in page and 'value="not-an-email"' in page
    resp = await client.post(
        "/webhooks", data={**form, "target_email": "oncall@example.com"}, allow_redirects=False
    )
    assert resp.status == 303
    detail = await (await client.get(resp.headers["Location"])).text()
    assert "http://monoduty.test/" in detail and "webhook_configs" in detail


async def test_the_event_stream_says_when_an_incident_changes(
    client: TestClient, pool: asyncpg.Pool, account: Account, settings: Settings
) -> None:
    incident = await incident_of(client, account, settings)
    await log_in(client, WebUser(account.user, await _password(pool, account)))
    stream = await client.get("/events")
    assert stream.status == 200 and stream.content_type == "text/event-stream"
    assert stream.headers["Content-Security-Policy"]
    seen: list[str] = []

    async def read() -> None:
        async for line in stream.content:
            seen.append(line.decode().strip())

    reader = asyncio.create_task(read())
    try:
        await wait_until(lambda: "event: resync" in seen, "the stream's first resync")
        resp = await client.post(f"/api/incidents/{incident['id']}/acknowledge", headers=account.headers)
        assert resp.status == 200
        await wait_until(lambda: f"event: incident-{incident['id']}" in seen, "the change on the stream", 5)
        assert "event: incident" in seen
    finally:
        reader.cancel()
        stream.close()
