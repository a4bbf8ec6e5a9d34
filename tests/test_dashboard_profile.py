"""The dashboard's profile, inbox, reports, status and outbox pages over HTTP (the browser flows
are in tests/test_dashboard_browser.py): each calls the engine as the JSON API does, every change
is a POST with the CSRF token, and what one user sees is their own."""

from __future__ import annotations

import csv
import io
import re
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
from aiohttp.test_utils import TestClient
from arq.connections import ArqRedis

from engine.auth import sessions
from engine.reports import render_csv
from engine.settings import Settings
from tests.support.factories import Account, make_client, run_worker, send_alert
from tests.support.sessions import WebUser, log_in, web_user

HTML = "text/html"


def csrf_of(page: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert match, page
    return match.group(1)


def badge(page: str) -> str:
    """The navigation's unread count, as the page shows it ("" when none)."""
    match = re.search(r'<span id="inbox-badge"[^>]*>(.*?)</span>\s*</a>', page, flags=re.S)
    assert match, page
    count = re.search(r'<span class="badge">([^<]*)<', match.group(1))
    return count.group(1) if count else ""


async def signed_in(client: TestClient, pool: asyncpg.Pool, account: Account) -> str:
    """The account's user signed in as a browser; the CSRF token."""
    async with pool.acquire() as conn:
        from engine.auth.accounts import set_password

        await set_password(conn, account.user.id, "a password long enough")
    return await log_in(client, WebUser(account.user, "a password long enough"))


async def alerts(client: TestClient, account: Account, settings: Settings, count: int) -> dict:
    webhook, _ = await send_alert(client, account)
    path = webhook["webhook_url"].removeprefix("http://monoduty.test")
    for i in range(count - 1):
        resp = await client.post(path, json={"title": f"More trouble {i}", "dedupKey": f"more-{i}"})
        assert resp.status == 202
    await run_worker(settings)
    return webhook


async def test_every_new_page_renders_for_a_signed_in_user_and_links_from_the_navigation(
    client: TestClient, pool: asyncpg.Pool, account: Account
) -> None:
    await signed_in(client, pool, account)
    for path, heading in (
        ("/profile", "Profile"),
        ("/inbox", "Inbox"),
        ("/reports", "Reports"),
        ("/status", "Status"),
        ("/outbox", "Outbox"),
    ):
        resp = await client.get(path)
        assert resp.status == 200, (path, await resp.text())
        assert resp.content_type == HTML
        page = await resp.text()
        assert f"<h1>{heading}</h1>" in page
        assert f'<a href="{path}" aria-current="page">' in page  # its own entry in the navigation
    # the empty states say what to do first
    assert "No notifications yet" in await (await client.get("/inbox")).text()
    assert "No alerts in this range" in await (await client.get("/reports")).text()
    assert "Nothing would have been sent yet" in await (await client.get("/outbox")).text()


async def test_the_outbox_is_not_found_and_not_linked_outside_dev(
    settings: Settings, redis: ArqRedis, pool: asyncpg.Pool, account: Account
) -> None:
    production = await make_client(settings.with_(dev=False))
    try:
        await signed_in(production, pool, account)
        resp = await production.get("/outbox")
        assert resp.status == 404 and resp.content_type == HTML
        page = await (await production.get("/profile")).text()
        assert 'href="/outbox"' not in page and 'href="/inbox"' in page
    finally:
        await production.close()


async def test_the_outbox_lists_what_would_have_been_sent_newest_first(
    client: TestClient, pool: asyncpg.Pool, account: Account, settings: Settings
) -> None:
    await alerts(client, account, settings, 2)
    await signed_in(client, pool, account)
    page = await (await client.get("/outbox")).text()
    assert page.count('class="panel outbox-entry"') >= 2
    ids = [int(i) for i in re.findall(r'id="outbox-(\d+)"', page)]
    assert ids == sorted(ids, reverse=True)
    assert "More trouble 0" in page
    fragment = await client.get("/outbox", headers={"HX-Request": "true", "HX-Target": "outbox-list"})
    assert "<h1>" not in await fragment.text()  # htmx's refresh gets the list alone


async def test_the_inbox_badge_counts_unread_and_marking_read_clears_it(
    client: TestClient, pool: asyncpg.Pool, account: Account, settings: Settings
) -> None:
    await alerts(client, account, settings, 3)
    token = await signed_in(client, pool, account)
    page = await (await client.get("/")).text()
    assert badge(page) == "3"  # on every page's navigation, the home page's too
    assert badge(await (await client.get("/reports")).text()) == "3"
    fragment = await client.get("/inbox/badge", headers={"HX-Request": "true"})
    assert '<span class="badge">3<' in await fragment.text()

    inbox = await (await client.get("/inbox")).text()
    first = re.search(r'action="/inbox/([0-9a-f-]{36})/read"', inbox)
    assert first and inbox.count("Mark read<") == 3
    refused = await client.post(f"/inbox/{first.group(1)}/read", allow_redirects=False)
    assert refused.status == 403  # no CSRF token: nothing done
    assert badge(await (await client.get("/inbox")).text()) == "3"
    resp = await client.post(
        f"/inbox/{first.group(1)}/read", data={"csrf_token": token}, allow_redirects=False
    )
    assert resp.status == 303
    assert badge(await (await client.get("/inbox")).text()) == "2"
    unread = await (await client.get("/inbox?unread=true")).text()
    assert first.group(1) not in unread and unread.count("Mark read<") == 2

    resp = await client.post("/inbox/read-all", data={"csrf_token": token}, allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"] == "/inbox"
    page = await (await client.get("/inbox")).text()
    assert badge(page) == "" and "Everything is read." in page and "Mark all read" not in page
    counted = await client.get("/api/notifications/unread-count", headers=account.headers)
    assert (await counted.json())["unread_count"] == 0


async def test_another_users_notification_cannot_be_marked_read(
    client: TestClient, pool: asyncpg.Pool, account: Account, other_account: Account, settings: Settings
) -> None:
    await alerts(client, other_account, settings, 1)
    listed = await client.get("/api/notifications", headers=other_account.headers)
    theirs = (await listed.json())["notifications"][0]["id"]
    token = await signed_in(client, pool, account)
    resp = await client.post(f"/inbox/{theirs}/read", data={"csrf_token": token})
    assert resp.status == 404
    assert theirs not in await (await client.get("/inbox")).text()
    counted = await client.get("/api/notifications/unread-count", headers=other_account.headers)
    assert (await counted.json())["unread_count"] == 1


async def test_a_csv_report_downloads_as_the_api_makes_it(
    client: TestClient, pool: asyncpg.Pool, account: Account, settings: Settings
) -> None:
    await alerts(client, account, settings, 2)
    await signed_in(client, pool, account)
    today = datetime.now(UTC).date()
    params = {
        "type": "summary",
        "from": (today - timedelta(days=2)).isoformat(),
        "to": today.isoformat(),
        "format": "csv",
    }
    resp = await client.get("/reports/download", params=params)
    assert resp.status == 200, await resp.text()
    assert resp.headers["Content-Type"].startswith("text/csv")
    assert f"monoduty-summary-{params['from']}-to-{params['to']}.csv" in resp.headers["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(await resp.text())))
    assert tuple(rows[0]) == render_csv.SUMMARY
    assert rows[1][2] == "2"  # its webhook's calls

    page = await (await client.get("/reports", params=params)).text()
    assert page.count("<rect ") == 2  # today: a calls bar and an incidents bar
    assert f"{today.isoformat()}: 2 calls" in page
    assert re.search(r"<dt>Calls</dt><dd>2</dd>", page)


async def test_a_bad_report_range_is_shown_at_its_field(
    client: TestClient, pool: asyncpg.Pool, account: Account
) -> None:
    await signed_in(client, pool, account)
    for params, words in (
        ({"type": "summary", "from": "2026-03-10", "to": "2026-03-01", "format": "csv"}, "is reversed"),
        ({"type": "summary", "from": "2024-01-01", "to": "2026-01-01", "format": "csv"}, "is too long"),
        ({"type": "summary", "from": "2026-03-01", "to": "", "format": "csv"}, "is malformed"),
        ({"type": "nonsense", "from": "2026-03-01", "to": "2026-03-02", "format": "csv"}, "type must be"),
    ):
        resp = await client.get("/reports/download", params=params)
        assert resp.status == 400 and resp.content_type == HTML, params
        page = await resp.text()
        assert words in page, (params, page)
        assert 'class="field-error"' in page


async def test_the_reports_chart_counts_incidents_per_day_with_mtta(
    client: TestClient, pool: asyncpg.Pool, account: Account, settings: Settings
) -> None:
    webhook = await alerts(client, account, settings, 1)
    found = await client.get("/api/incidents", params={"webhook": webhook["id"]}, headers=account.headers)
    incident = (await found.json())["incidents"][0]
    async with pool.acquire() as conn:  # acknowledged 90 s after its first alert
        await conn.execute(
            "UPDATE incidents SET status = 'acknowledged',"
            " acknowledged_at = first_alert_at + interval '90 seconds' WHERE id = $1",
            uuid.UUID(incident["id"]),
        )
    await signed_in(client, pool, account)
    page = await (await client.get("/reports")).text()
    assert re.search(r"<dt>Incidents opened</dt><dd>1</dd>", page)
    assert re.search(r"<dt>MTTA \(mean time to acknowledge\)</dt><dd>2 min</dd>", page)
    assert re.search(r"<dt>MTTR \(mean time to resolve\)</dt><dd>none yet</dd>", page)


async def test_the_status_page_shows_each_component_in_words(
    client: TestClient, pool: asyncpg.Pool, account: Account
) -> None:
    await signed_in(client, pool, account)
    await client.get("/api/status")  # a request for the response times to count
    page = await (await client.get("/status")).text()
    for words in ("Database (PostgreSQL)", "Queue store (Redis)", "Workers", "Queue", "Last 24 hours"):
        assert words in page, words
    assert re.search(r'<span class="level level-operational">Operational</span>', page)
    assert "Monoduty is" in page


async def test_a_phone_number_is_verified_from_the_profile(
    client: TestClient, pool: asyncpg.Pool, account: Account
) -> None:
    token = await signed_in(client, pool, account)
    resp = await client.post(
        "/profile/contact-methods",
        data={"csrf_token": token, "type": "SMS", "target": "+14155550177"},
        allow_redirects=False,
    )
    assert resp.status == 303
    page = await (await client.get(resp.headers["Location"])).text()
    assert "Contact method added." in page
    method = re.search(
        r'<li id="method-([0-9a-f-]{36})">\s*<div class="method-line">\s*'
        r'<span class="kind">SMS</span> <span class="target">\+14155550177',
        page,
    )
    assert method, page
    method_id = method.group(1)
    assert "Not verified: not paged" in page

    wrong = await client.post(
        f"/profile/contact-methods/{method_id}/verify", data={"csrf_token": token, "code": "123456"}
    )
    assert wrong.status == 400 and "No code is waiting: send one first" in await wrong.text()
    sent = await client.post(f"/profile/contact-methods/{method_id}/send-code", data={"csrf_token": token})
    assert sent.status == 200 and "A code is on its way" in await sent.text()
    async with pool.acquire() as conn:  # dev mode: the SMS is in the outbox
        body = await conn.fetchval(
            "SELECT subject || ' ' || body FROM outbox WHERE target = '+14155550177' ORDER BY id DESC LIMIT 1"
        )
    code = re.search(r"\b(\d{6})\b", body)
    assert code
    outbox = await (await client.get("/outbox")).text()  # the dev outbox shows the user their code
    assert code.group(1) in outbox
    listed = await client.get("/api/dev/outbox", headers=account.headers)  # and the API's, the same
    codes = [m for m in (await listed.json())["messages"] if m["alert_id"] is None]
    assert [m["target"] for m in codes] == ["+14155550177"] and code.group(1) in codes[0]["subject"]
    again = await client.post(f"/profile/contact-methods/{method_id}/send-code", data={"csrf_token": token})
    assert again.status == 429 and "less than a minute ago" in await again.text()
    done = await client.post(
        f"/profile/contact-methods/{method_id}/verify", data={"csrf_token": token, "code": code.group(1)}
    )
    assert done.status == 200 and "Number verified" in await done.text()
    listed = await client.get("/api/me/contact-methods", headers=account.headers)
    ours = next(m for m in (await listed.json())["contact_methods"] if m["id"] == method_id)
    assert ours["verified"] is True


async def test_notification_rules_are_added_with_the_engines_checks_and_deleted(
    client: TestClient, pool: asyncpg.Pool, account: Account
) -> None:
    token = await signed_in(client, pool, account)
    listed = await client.get("/api/me/contact-methods", headers=account.headers)
    email = next(m for m in (await listed.json())["contact_methods"] if m["type"] == "EMAIL")
    bad = await client.post(
        "/profile/notification-rules", data={"csrf_token": token, "method": email["id"], "delay": "99999"}
    )
    assert bad.status == 400 and "Delay must be a whole number from 0 to" in await bad.text()
    resp = await client.post(
        "/profile/notification-rules",
        data={"csrf_token": token, "method": email["id"], "delay": "7"},
        allow_redirects=False,
    )
    assert resp.status == 303
    rules = (await (await client.get("/api/me/notification-rules", headers=account.headers)).json())[
        "notification_rules"
    ]
    added = next(r for r in rules if r["delay_minutes"] == 7)
    page = await (await client.get("/profile")).text()
    assert "7 min" in page
    resp = await client.post(
        f"/profile/notification-rules/{added['id']}/delete", data={"csrf_token": token}, allow_redirects=False
    )
    assert resp.status == 303
    rules = (await (await client.get("/api/me/notification-rules", headers=account.headers)).json())[
        "notification_rules"
    ]
    assert added["id"] not in [r["id"] for r in rules]


async def test_a_user_without_a_password_sets_one_and_other_sessions_end(
    client: TestClient, settings: Settings, pool: asyncpg.Pool, redis: ArqRedis, account: Account
) -> None:
    # as the dev one-time link leaves a user: signed in, no password
    cookie, _ = await sessions.start(redis, account.user.id, settings.session_ttl)
    other_cookie, _ = await sessions.start(redis, account.user.id, settings.session_ttl)
    client.session.cookie_jar.update_cookies({"monoduty_session": cookie})
    page = await (await client.get("/profile")).text()
    assert "Set a password" in page and 'name="current_password"' not in page
    assert page.count("Sign out<span") == 1  # the other session; this one is "This session"
    token = csrf_of(page)
    differ = await client.post(
        "/profile/password",
        data={"csrf_token": token, "new_password": "one calm password", "confirm_password": "another"},
    )
    assert differ.status == 400 and "The two new passwords differ." in await differ.text()
    short = await client.post(
        "/profile/password", data={"csrf_token": token, "new_password": "short", "confirm_password": "short"}
    )
    assert short.status == 400 and "New password must be" in await short.text()
    resp = await client.post(
        "/profile/password",
        data={
            "csrf_token": token,
            "new_password": "one calm password",
            "confirm_password": "one calm password",
        },
        allow_redirects=False,
    )
    assert resp.status == 303
    assert await sessions.resume(redis, other_cookie, settings.session_ttl) is None
    page = await (await client.get("/profile")).text()  # this session lives on
    assert "Change password" in page and 'name="current_password"' in page
    wrong = await client.post(
        "/profile/password",
        data={
            "csrf_token": token,
            "current_password": "not it",
            "new_password": "a third password",
            "confirm_password": "a third password",
        },
    )
    assert wrong.status == 400 and "Current password is not right" in await wrong.text()
    login = await client.post(
        "/api/auth/login", json={"email": account.user.email, "password": "one calm password"}
    )
    assert login.status == 200


async def test_a_session_is_signed_out_from_the_profile_and_only_ones_own(
    client: TestClient, settings: Settings, pool: asyncpg.Pool, redis: ArqRedis, account: Account
) -> None:
    token = await signed_in(client, pool, account)
    firefox = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0"
    other_cookie, other = await sessions.start(redis, account.user.id, settings.session_ttl, client=firefox)
    stranger = await web_user(pool)
    stranger_cookie, stranger_session = await sessions.start(redis, stranger.user.id, settings.session_ttl)
    page = await (await client.get("/profile")).text()
    ends = re.findall(r'action="/profile/sessions/([0-9a-f]{24})/end"', page)
    assert ends == [sessions.public_id(other.key)]
    assert "This session" in page
    assert ">Firefox on Windows</span>" in page  # the other one, named by its browser
    assert re.search(r">Python/[\d.]+</span> <span class=\"tag tag-ok\">This session", page)  # aiohttp's
    resp = await client.post(
        f"/profile/sessions/{sessions.public_id(stranger_session.key)}/end",
        data={"csrf_token": token},
        allow_redirects=False,
    )
    assert resp.status == 303  # nothing of someone else's is ended (nor said to exist)
    assert await sessions.resume(redis, stranger_cookie, settings.session_ttl) is not None
    resp = await client.post(
        f"/profile/sessions/{ends[0]}/end", data={"csrf_token": token}, allow_redirects=False
    )
    assert resp.status == 303
    assert await sessions.resume(redis, other_cookie, settings.session_ttl) is None
    assert (await client.get("/profile")).status == 200  # this one still signed in


async def test_an_api_key_is_shown_once_works_and_is_revoked(
    client: TestClient, pool: asyncpg.Pool, account: Account
) -> None:
    token = await signed_in(client, pool, account)
    empty = await client.post("/profile/api-keys", data={"csrf_token": token, "name": ""})
    assert empty.status == 400 and 'id="keys-error"' in await empty.text()
    resp = await client.post("/profile/api-keys", data={"csrf_token": token, "name": "deploy script"})
    assert resp.status == 201
    page = await resp.text()
    secret = re.search(r'id="new-key" type="text" readonly value="([^"]+)"', page)
    assert secret and "shown this once" in page
    me = await client.get("/api/auth/me", headers={"Authorization": f"Bearer {secret.group(1)}"}, cookies={})
    assert me.status == 200
    later = await (await client.get("/profile")).text()
    assert secret.group(1) not in later and "deploy script" in later
    key_id = next(
        k["id"]
        for k in (await (await client.get("/api/api-keys", headers=account.headers)).json())["api_keys"]
        if k["name"] == "deploy script"
    )
    resp = await client.post(
        f"/profile/api-keys/{key_id}/revoke", data={"csrf_token": token}, allow_redirects=False
    )
    assert resp.status == 303
    client.session.cookie_jar.clear()
    refused = await client.get("/api/auth/me", headers={"Authorization": f"Bearer {secret.group(1)}"})
    assert refused.status == 401


async def test_the_calendar_link_is_the_apis_and_rotates(
    client: TestClient, pool: asyncpg.Pool, account: Account
) -> None:
    token = await signed_in(client, pool, account)
    api_url = (await (await client.get("/api/me/ical", headers=account.headers)).json())["ical_url"]
    page = await (await client.get("/profile")).text()
    assert f'id="feed-url" type="text" readonly value="{api_url}"' in page
    resp = await client.post("/profile/calendar/rotate", data={"csrf_token": token}, allow_redirects=False)
    assert resp.status == 303
    rotated = (await (await client.get("/api/me/ical", headers=account.headers)).json())["ical_url"]
    assert rotated != api_url
    old = await client.get(api_url.removeprefix("http://monoduty.test"))
    assert old.status == 404


async def test_another_users_methods_rules_and_keys_are_not_found(
    client: TestClient, pool: asyncpg.Pool, account: Account, other_account: Account
) -> None:
    headers = other_account.headers
    method = (await (await client.get("/api/me/contact-methods", headers=headers)).json())["contact_methods"][
        0
    ]
    rule = (await (await client.get("/api/me/notification-rules", headers=headers)).json())[
        "notification_rules"
    ][0]
    key = (await (await client.get("/api/api-keys", headers=headers)).json())["api_keys"][0]
    token = await signed_in(client, pool, account)
    for path in (
        f"/profile/contact-methods/{method['id']}/delete",
        f"/profile/contact-methods/{method['id']}/send-code",
        f"/profile/contact-methods/{method['id']}/verify",
        f"/profile/notification-rules/{rule['id']}/delete",
        f"/profile/api-keys/{key['id']}/revoke",
    ):
        resp = await client.post(path, data={"csrf_token": token, "code": "123456"})
        assert resp.status == 404 and resp.content_type == HTML, path
    added = await client.post(
        "/profile/notification-rules", data={"csrf_token": token, "method": method["id"], "delay": "1"}
    )
    assert added.status == 400  # someone else's method is no method of the caller's
    page = await (await client.get("/profile")).text()
    assert method["id"] not in page and key["id"] not in page and rule["id"] not in page
    assert (await client.get("/api/auth/me", headers=headers)).status == 200  # their key still works
    still = (await (await client.get("/api/me/notification-rules", headers=headers)).json())[
        "notification_rules"
    ]
    assert rule["id"] in [r["id"] for r in still]


async def test_the_badge_counts_to_99_plus_and_the_inbox_says_how_many(
    client: TestClient, pool: asyncpg.Pool, account: Account
) -> None:
    async with pool.acquire() as conn:
        await conn.executemany(
            "INSERT INTO notifications (id, user_id, kind, title, body)"
            " VALUES ($1, $2, 'alert_received', $3, '')",
            [(uuid.uuid4(), account.user.id, f"n{i}") for i in range(150)],
        )
    await signed_in(client, pool, account)
    assert badge(await (await client.get("/status")).text()) == "99+"
    inbox = await (await client.get("/inbox")).text()
    assert "<strong>150 unread</strong>" in inbox and 'href="/inbox?cursor=' in inbox  # 50 a page
