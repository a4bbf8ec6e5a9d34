"""Acknowledging from the message that paged you: the push's buttons and the email's links lead to
``/a/<token>`` (api/action_links.py). A real worker pages through the local ntfy and SMTP
server, and the links it sent are used the way ntfy and a browser use them.

GET only shows; the POST acts, once, as the person paged, "via push" or "via email link"; a
forged, altered or expired link is refused and changes nothing; no log line holds a token.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import asyncpg
import pytest
from aiohttp.test_utils import TestClient, TestServer

from api.app import create_app
from engine.clock import SYSTEM, Clock
from engine.incidents import actions, channel_actions
from engine.settings import Settings
from tests.support.clock import ScaledClock, ShiftedClock
from tests.support.escalation import add_rule, clear_rules, incident_of, new_policy, step, worker_running
from tests.support.factories import ALERT, WEBHOOK, Account, create, new_account, path_of
from tests.support.processes import wait_until
from tests.support.providers import FakeProviders, SmtpServer
from tests.support.teams import new_team

PUBLIC_URL = "http://monoduty.test"  # provider_settings' public URL: where the links point
SECRET_KEY = "action-links-secret-key-0123456789abcdef"
# What a browser sends when it opens a link or submits a form.
BROWSER = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}
# An ntfy http button: a POST of its URL as given, no body, ntfy's own headers.
NTFY = {"User-Agent": "ntfy/1.21.2 (Android)"}
ALERTMANAGER = Path(__file__).parent / "data" / "alertmanager"


@pytest.fixture
def link_settings(provider_settings: Settings) -> Settings:
    return provider_settings.with_(secret_key=SECRET_KEY, escalation_sweep_seconds=1)


@contextlib.asynccontextmanager
async def serving(settings: Settings, clock: Clock = SYSTEM) -> AsyncIterator[TestClient]:
    """The API on ``clock``, logging as ``monoduty api`` does: no aiohttp access log with raw
    paths (monoduty/cli.py), only api.observability's line naming the route pattern."""
    server = TestServer(create_app(settings, clock=clock))
    await server.start_server(access_log=None)
    client = TestClient(server)
    try:
        yield client
    finally:
        await client.close()


async def policy_webhook(api: TestClient, owner: Account, oncall: Account, **changes: Any) -> dict[str, Any]:
    """A webhook of a team whose policy pages ``oncall`` (a responder) and then waits 30 minutes."""
    team = await new_team(api, owner, members={"responder": oncall})
    policy = await new_policy(api, owner, step(30, oncall), team_id=team["id"])
    body = {**WEBHOOK, "teamId": team["id"], "escalationPolicyId": policy["id"], **changes}
    return await create(api, owner, body)


async def send(api: TestClient, webhook: dict[str, Any], alert: dict[str, Any] = ALERT) -> str:
    resp = await api.post(path_of(webhook), json=alert)
    assert resp.status == 202, await resp.text()
    return str((await resp.json())["alert_id"])


def local(url: str) -> str:
    """A link the worker sent, as a request to the test server (which stands at PUBLIC_URL)."""
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}" == PUBLIC_URL, url
    return parts.path + (f"?{parts.query}" if parts.query else "")


def token_of(url: str) -> str:
    return urlsplit(url).path.removeprefix(channel_actions.ROUTE)


def ntfy_buttons(header: str) -> dict[str, dict[str, str]]:
    """The buttons of an ntfy ``Actions`` header in the simple format, by label."""
    buttons = {}
    for button in re.split(r";\s*(?=action=)", header):
        fields = dict(re.findall(r'(\w+)=("[^"]*"|[^,]*)', button))
        buttons[fields["label"]] = {key: value.strip('"') for key, value in fields.items()}
    return buttons


def emailed_links(smtp: SmtpServer, to: str) -> dict[str, str] | None:
    """The Acknowledge and Resolve links of the page email to ``to``, once it came."""
    pages = [m for m in smtp.messages if m["To"] == to and "RESOLVED" not in m["Subject"]]
    if not pages:
        return None
    text = pages[0].get_body(("plain",)).get_content().replace("\r\n", "\n")  # as SMTP carried it
    return dict(re.findall(r"^(Acknowledge|Resolve): (\S+)$", text, re.MULTILINE))


async def acted(pool: asyncpg.Pool, incident_id: uuid.UUID) -> tuple[str, list[tuple[str, uuid.UUID, str]]]:
    """The incident's status and its acknowledge and resolve events (kind, by whom, text)."""
    async with pool.acquire() as conn:
        status = await conn.fetchval("SELECT status FROM incidents WHERE id = $1", incident_id)
        events = await conn.fetch(
            "SELECT kind, user_id, text FROM incident_events"
            " WHERE incident_id = $1 AND kind IN ('acknowledged', 'resolved') ORDER BY created_at",
            incident_id,
        )
    return status, [(e["kind"], e["user_id"], e["text"]) for e in events]


async def leave_resolved(pool: asyncpg.Pool, owner: Account, incident_ids: list[uuid.UUID]) -> None:
    """Nothing left escalating for the next tests' workers (the database is the session's)."""
    async with pool.acquire() as conn:
        for incident_id in incident_ids:
            await actions.resolve(conn, owner.user.id, incident_id, SYSTEM.now())


def no_token_logged(caplog: pytest.LogCaptureFixture, token: str) -> None:
    # mail.log is aiosmtpd's: the stand-in SMTP server, where the email (links and all) arrives.
    ours = [r for r in caplog.records if r.name != "mail.log"]
    assert len(ours) > 10  # the worker's and the API's lines were captured
    logged = "".join(r.getMessage() + repr(r.__dict__) for r in ours)
    payload, _, signature = token.partition(".")
    assert payload not in logged and signature not in logged


async def test_a_push_button_acknowledges_the_incident_and_nothing_more_is_paged(
    link_settings: Settings,
    redis: object,
    pool: asyncpg.Pool,
    account: Account,
    fake_providers: FakeProviders,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    clock = ScaledClock(30)  # a policy minute in two seconds
    first, later = (f"oncall-{uuid.uuid4().hex[:8]}" for _ in range(2))
    async with serving(link_settings, clock) as api:
        oncall = await new_account(pool)
        await clear_rules(api, oncall)
        await add_rule(api, oncall, "PUSH_NOTIF", first, 0)
        await add_rule(api, oncall, "PUSH_NOTIF", later, 1)  # a minute on, unless acknowledged
        webhook = await policy_webhook(api, account, oncall)
        async with worker_running(link_settings, clock):
            alert_id = await send(api, webhook)
            push = await wait_until(
                lambda: next((r for r in fake_providers.requests if r.target == first), None), "the push"
            )
            buttons = ntfy_buttons(push.headers["Actions"])
            acknowledge = buttons["Acknowledge"]
            assert (acknowledge["action"], acknowledge["method"], acknowledge["clear"]) == (
                "http",
                "POST",
                "true",
            )
            resp = await api.post(local(acknowledge["url"]), headers=NTFY)
            assert resp.status == 200, await resp.text()
            answer = await resp.json()
            acknowledged_at = clock.now()
            await wait_until(
                lambda: clock.now() - acknowledged_at > timedelta(minutes=2), "two policy minutes"
            )

    incident = await incident_of(pool, alert_id)
    assert incident is not None
    assert answer["status"] == "acknowledged"
    assert answer["incidents"] == [
        {
            "id": str(incident["id"]),
            "number": incident["number"],
            "title": "DB down",
            "status": "acknowledged",
            "changed": True,
        }
    ]
    assert resp.headers["Cache-Control"] == "no-store"
    # Tapping the notification opens the incident's page; the link's grant is for the push.
    assert push.headers["Click"] == acknowledge["url"].partition("?")[0]
    assert await acted(pool, incident["id"]) == (
        "acknowledged",
        [("acknowledged", oncall.user.id, "via push")],
    )
    assert [r.target for r in fake_providers.requests if r.target in (first, later)] == [first]
    no_token_logged(caplog, token_of(acknowledge["url"]))
    await leave_resolved(pool, account, [incident["id"]])


async def test_an_email_link_only_shows_and_the_page_form_acknowledges_once(
    link_settings: Settings,
    redis: object,
    pool: asyncpg.Pool,
    account: Account,
    smtp_server: SmtpServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    async with serving(link_settings) as api:
        oncall = await new_account(pool)  # the default rules: an email at once
        webhook = await policy_webhook(api, account, oncall)
        async with worker_running(link_settings):
            alert_id = await send(api, webhook)
            links = await wait_until(lambda: emailed_links(smtp_server, oncall.user.email), "the email")
        incident = await incident_of(pool, alert_id)
        assert incident is not None
        number = incident["number"]

        # A mail scanner, a link preview, the person: each fetch only shows the page.
        for headers in ({}, BROWSER, BROWSER):
            resp = await api.get(local(links["Acknowledge"]), headers=headers)
            assert resp.status == 200
        page = await resp.text()
        assert resp.content_type == "text/html"
        assert (resp.headers["Cache-Control"], resp.headers["Referrer-Policy"]) == ("no-store", "no-referrer")
        assert f"Acknowledge #{number} DB down?" in page and "<em>triggered</em>" in page
        assert 'value="acknowledge"' in page and 'value="resolve"' not in page  # the one button asked for
        assert await acted(pool, incident["id"]) == ("triggered", [])

        # Pressing the button: the form posts to the page's own address.
        form = re.search(r'<form method="post" action="([^"]+)">', page)
        assert form is not None
        target = local(urljoin(links["Acknowledge"], form[1]))
        resp = await api.post(target, data={"action": "acknowledge"}, headers=BROWSER)
        assert resp.status == 200 and resp.content_type == "text/html"
        done = await resp.text()
        assert f"Acknowledged #{number}." in done and "<em>acknowledged</em>" in done
        assert 'value="resolve"' in done  # what is left to do
        again = await api.post(target, data={"action": "acknowledge"}, headers=BROWSER)
        assert f"#{number} was already acknowledged." in await again.text()
        unknown = await api.post(target, data={"action": "escalate"})
        assert unknown.status == 400 and (await unknown.json())["code"] == "VALIDATION_ERROR"

    assert await acted(pool, incident["id"]) == (
        "acknowledged",
        [("acknowledged", oncall.user.id, "via email link")],
    )
    no_token_logged(caplog, token_of(links["Acknowledge"]))
    await leave_resolved(pool, account, [incident["id"]])


async def test_resolving_from_an_email_link_sends_the_resolved_notice(
    link_settings: Settings, redis: object, pool: asyncpg.Pool, account: Account, smtp_server: SmtpServer
) -> None:
    async with serving(link_settings) as api:
        oncall = await new_account(pool)
        webhook = await policy_webhook(api, account, oncall)
        async with worker_running(link_settings):
            alert_id = await send(api, webhook)
            links = await wait_until(lambda: emailed_links(smtp_server, oncall.user.email), "the email")
            resp = await api.post(local(links["Resolve"]))
            assert resp.status == 200, await resp.text()
            answer = await resp.json()
            notice = await wait_until(
                lambda: [m for m in smtp_server.messages if "RESOLVED" in m["Subject"]], "the notice"
            )
    incident = await incident_of(pool, alert_id)
    assert incident is not None
    assert (answer["status"], answer["message"]) == ("resolved", f"Resolved #{incident['number']}.")
    assert [m["To"] for m in notice] == [oncall.user.email]
    assert f"RESOLVED #{incident['number']}" in notice[0]["Subject"]
    assert await acted(pool, incident["id"]) == ("resolved", [("resolved", oncall.user.id, "via email link")])


async def test_a_tampered_or_expired_link_is_refused_and_changes_nothing(
    link_settings: Settings, redis: object, pool: asyncpg.Pool, account: Account, smtp_server: SmtpServer
) -> None:
    async with serving(link_settings) as api:
        oncall = await new_account(pool)
        webhook = await policy_webhook(api, account, oncall)
        async with worker_running(link_settings):
            alert_id = await send(api, webhook)
            links = await wait_until(lambda: emailed_links(smtp_server, oncall.user.email), "the email")
        good = local(links["Acknowledge"])
        payload, _, signature = token_of(links["Acknowledge"]).partition(".")
        flip = {"A": "B"}
        tampered = [
            f"{flip.get(payload[0], 'A')}{payload[1:]}.{signature}",  # another delivery, person or expiry
            f"{payload}.{signature[:-1]}{flip.get(signature[-1], 'A')}",
        ]
        for token in tampered:
            path = good.replace(token_of(links["Acknowledge"]), token)
            resp = await api.post(path)
            assert resp.status == 403
            body = await resp.json()
            assert body.keys() == {"success", "error", "code", "timestamp"}
            assert (body["success"], body["code"]) == (False, "ACTION_LINK_INVALID")
            page = await api.get(path, headers=BROWSER)
            assert page.status == 403 and "Link not valid" in await page.text()

    # A day on, the link has expired (the API's clock is the one that counts).
    async with serving(
        link_settings, ShiftedClock((channel_actions.LIFETIME + timedelta(minutes=1)).total_seconds())
    ) as later:
        resp = await later.post(good)
        assert resp.status == 403 and (await resp.json())["code"] == "ACTION_LINK_INVALID"
        page = await later.post(good, data={"action": "acknowledge"}, headers=BROWSER)
        assert page.status == 403 and "Link not valid" in await page.text()

    incident = await incident_of(pool, alert_id)
    assert incident is not None
    assert await acted(pool, incident["id"]) == ("triggered", [])
    await leave_resolved(pool, account, [incident["id"]])


async def test_a_bundles_button_acknowledges_each_of_its_incidents(
    link_settings: Settings,
    redis: object,
    pool: asyncpg.Pool,
    account: Account,
    fake_providers: FakeProviders,
) -> None:
    topic = f"oncall-{uuid.uuid4().hex[:8]}"
    group = json.loads((ALERTMANAGER / "04-firing.json").read_text())  # one group of three firing alerts
    async with serving(link_settings) as api:
        oncall = await new_account(pool)
        await clear_rules(api, oncall)
        await add_rule(api, oncall, "PUSH_NOTIF", topic, 0)
        webhook = await policy_webhook(api, account, oncall, dedupBy="alert")
        async with worker_running(link_settings):
            await send(api, webhook, group)
            push = await wait_until(
                lambda: next((r for r in fake_providers.requests if r.target == topic), None), "the push"
            )
            resp = await api.post(
                local(ntfy_buttons(push.headers["Actions"])["Acknowledge"]["url"]), headers=NTFY
            )
            assert resp.status == 200, await resp.text()
            answer = await resp.json()

    assert push.headers["Title"].startswith("[CRITICAL] 3 incidents need you: #")
    assert answer["status"] == "acknowledged" and len(answer["incidents"]) == 3
    assert all(i["status"] == "acknowledged" and i["changed"] for i in answer["incidents"])
    for incident in answer["incidents"]:
        assert await acted(pool, uuid.UUID(incident["id"])) == (
            "acknowledged",
            [("acknowledged", oncall.user.id, "via push")],
        )
    await leave_resolved(pool, account, [uuid.UUID(i["id"]) for i in answer["incidents"]])
