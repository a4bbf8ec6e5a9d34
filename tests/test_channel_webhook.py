"""WEBHOOK: Standard Webhooks signed events, verified by a receiver using the official
`standardwebhooks` package, deduped by webhook-id across a retry, end to end through a worker."""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import asyncpg
import pytest
from aiohttp import web
from arq.connections import ArqRedis
from standardwebhooks import Webhook, WebhookVerificationError

from engine.channels.base import ActionLinks, DeliveryError
from engine.channels.registry import configured_types
from engine.channels.webhook import WebhookChannel, signing_secret
from engine.settings import Settings
from tests.support.channels import alert
from tests.support.chat import SECRET_KEY, chat_settings, page_through_worker, serve
from tests.support.escalation import clear_rules, new_policy, step, worker_running
from tests.support.factories import ALERT, WEBHOOK, create, make_client, new_account, path_of, run_worker
from tests.support.processes import wait_until
from tests.support.providers import FakeProviders
from tests.support.teams import new_team

OWNER = str(uuid.uuid4())


@dataclass
class Receiver:
    """A receiver as the spec asks one to be: verify, then dedupe by webhook-id; ``fail`` first."""

    secret: str | None = None  # None: take it from the first request's test (set by the test)
    fail: list[int] = field(default_factory=list)  # statuses to answer the next requests with
    url: str = ""
    seen: list[str] = field(default_factory=list)  # webhook-id of every verified request
    events: dict[str, Any] = field(default_factory=dict)  # by webhook-id: each event once
    refused: int = 0

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        try:
            event = Webhook(self.secret or "").verify(body, dict(request.headers))
        except WebhookVerificationError:
            self.refused += 1
            return web.json_response({"error": "bad signature"}, status=401)
        msg_id = request.headers["webhook-id"]
        self.seen.append(msg_id)
        if self.fail:
            return web.Response(status=self.fail.pop(0), text="busy")
        self.events.setdefault(msg_id, event)
        return web.Response(status=204)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    receiver = Receiver()
    app = web.Application()
    app.router.add_post("/hooks/monoduty", receiver.handle)
    async with serve(app) as url:
        receiver.url = f"{url}/hooks/monoduty"
        yield receiver


def channel(session: aiohttp.ClientSession) -> WebhookChannel:
    return WebhookChannel(SECRET_KEY, session, 5.0)


def page(**changes: object) -> Any:
    actions = ActionLinks("t.s", "https://pager.example/a/t.s", "https://pager.example/a/t.s?action=acknowledge",
                          "https://pager.example/a/t.s?action=resolve")  # fmt: skip
    defaults: dict[str, Any] = {
        "delivery_id": str(uuid.uuid4()),
        "recipient_id": OWNER,
        "number": 42,
        "incident_url": "https://pager.example/incidents/1",
        "actions": actions,
    }
    return alert(**{**defaults, **changes})


async def test_the_event_verifies_with_the_standardwebhooks_package(
    receiver: Receiver, http_session: aiohttp.ClientSession
) -> None:
    receiver.secret = signing_secret(SECRET_KEY, OWNER, receiver.url)
    message = page()

    receipt = await channel(http_session).send(message, receiver.url)

    [(msg_id, event)] = receiver.events.items()
    assert msg_id == receipt.provider_id == f"msg_{message.delivery_id}"
    assert event["type"] == "incident.triggered"
    data = event["data"]
    incident = {"id": None, "number": 42, "status": None, "url": "https://pager.example/incidents/1"}
    assert data["incident"] == incident  # id and status: set by the worker from the delivery
    assert (data["title"], data["severity"], data["source"]) == (message.title, "critical", "prometheus")
    assert data["actions"]["acknowledge"] == "https://pager.example/a/t.s?action=acknowledge"
    assert receiver.secret.startswith("whsec_")


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"kind": "resolved"}, "incident.resolved"),
        ({"kind": "alert_received"}, "alert.received"),
        ({"number": None, "is_test": True, "actions": None}, "alert.received"),
        ({"kind": "bundle", "number": None}, "incident.triggered"),
    ],
)
async def test_event_types(
    receiver: Receiver, http_session: aiohttp.ClientSession, changes: dict[str, Any], expected: str
) -> None:
    receiver.secret = signing_secret(SECRET_KEY, OWNER, receiver.url)
    await channel(http_session).send(page(**changes), receiver.url)
    assert [e["type"] for e in receiver.events.values()] == [expected]


async def test_another_owners_secret_does_not_verify(
    receiver: Receiver, http_session: aiohttp.ClientSession
) -> None:
    # Someone who adds the same URL as their own target gets their own secret: no forging.
    receiver.secret = signing_secret(SECRET_KEY, str(uuid.uuid4()), receiver.url)

    with pytest.raises(DeliveryError) as caught:
        await channel(http_session).send(page(), receiver.url)

    assert caught.value.permanent and "webhook answered 401: bad signature" in str(caught.value)
    assert receiver.refused == 1 and receiver.events == {}


async def test_a_retry_keeps_its_webhook_id_so_the_receiver_dedupes(
    receiver: Receiver, http_session: aiohttp.ClientSession
) -> None:
    receiver.secret = signing_secret(SECRET_KEY, OWNER, receiver.url)
    receiver.fail = [503]
    message = page()

    with pytest.raises(DeliveryError) as caught:
        await channel(http_session).send(message, receiver.url)
    assert not caught.value.permanent
    await channel(http_session).send(replace(message), receiver.url)
    await channel(http_session).send(replace(message), receiver.url)  # a re-run after a lost answer

    assert receiver.seen == [f"msg_{message.delivery_id}"] * 3
    assert len(receiver.events) == 1


async def test_the_secret_never_shows_in_errors_or_logs(
    http_session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    secret = signing_secret(SECRET_KEY, OWNER, "placeholder")

    async def echo(request: web.Request) -> web.Response:
        # A careless receiver quoting back what it could compute: the secret of its own URL.
        return web.json_response({"message": f"expected {secret_of(request)}"}, status=400)

    def secret_of(request: web.Request) -> str:
        return signing_secret(SECRET_KEY, OWNER, str(request.url))

    app = web.Application()
    app.router.add_post("/in", echo)
    async with serve(app) as url:
        secret = signing_secret(SECRET_KEY, OWNER, f"{url}/in")
        with pytest.raises(DeliveryError) as caught:
            await channel(http_session).send(page(), f"{url}/in")

    assert "expected ***" in str(caught.value)
    assert secret not in str(caught.value) and secret not in caplog.text


def test_webhook_needs_the_secret_key() -> None:
    assert "WEBHOOK" not in configured_types(Settings())
    assert "WEBHOOK" in configured_types(Settings(secret_key=SECRET_KEY))


async def test_a_page_reaches_a_receiver_through_a_worker_and_a_forced_retry_is_deduped(
    receiver: Receiver, provider_settings: Settings, pool: asyncpg.Pool, redis: ArqRedis
) -> None:
    receiver.fail = [500]
    settings = chat_settings(provider_settings)
    # The secret is shown in the answer that creates the webhook; the receiver is configured with it.
    account = await new_account(pool)
    receiver.secret = signing_secret(SECRET_KEY, str(account.user.id), receiver.url)

    paged = await page_through_worker(settings, pool, "WEBHOOK", "webhook", receiver.url, account=account)

    assert paged.created["signing_secrets"][receiver.url].startswith("whsec_")
    [delivery] = paged.deliveries
    assert delivery["status"] == "delivered" and delivery["attempts"] == 2
    assert receiver.seen == [f"msg_{delivery['id']}"] * 2  # the same id on the retry: one event kept
    [event] = receiver.events.values()
    assert event["type"] == "incident.triggered" and event["data"]["title"] == "DB down"
    assert event["data"]["incident"]["url"].startswith("http://monoduty.test/incidents/")
    assert event["data"]["actions"]["acknowledge"].startswith("http://monoduty.test/a/")


async def test_a_private_target_is_refused_at_send_time_through_a_worker(
    receiver: Receiver, provider_settings: Settings, pool: asyncpg.Pool, redis: ArqRedis
) -> None:
    # Given while private targets were allowed (the API refuses it now); sent after they are not.
    settings = chat_settings(provider_settings)
    strict = chat_settings(provider_settings, allow_private_targets=False)

    paged = await page_through_worker(
        settings, pool, "WEBHOOK", "webhook", receiver.url, worker_settings=strict
    )

    [delivery] = paged.deliveries
    assert delivery["status"] == "failed" and delivery["attempts"] == 1
    assert "is a loopback address" in delivery["last_error"]
    assert receiver.seen == [] and receiver.refused == 0


async def test_a_webhook_contact_method_shows_its_secret_once(
    provider_settings: Settings, pool: asyncpg.Pool, redis: ArqRedis
) -> None:
    account = await new_account(pool)
    client = await make_client(chat_settings(provider_settings))
    try:
        url = "https://hooks.example.org/monoduty?me=1"
        resp = await client.post(
            "/api/me/contact-methods", json={"type": "WEBHOOK", "target": url}, headers=account.headers
        )
        created = await resp.json()
        listed = await (await client.get("/api/me/contact-methods", headers=account.headers)).json()
    finally:
        await client.close()

    assert resp.status == 201, created
    assert created["signing_secret"] == signing_secret(SECRET_KEY, str(account.user.id), url)
    assert created["contact_method"]["needs_verification"] is False
    assert created["signing_secret"] not in json.dumps(listed)


async def test_a_person_paged_by_a_policy_is_reached_on_their_webhook_contact_method(
    receiver: Receiver, provider_settings: Settings, pool: asyncpg.Pool, redis: ArqRedis
) -> None:
    settings = chat_settings(provider_settings, escalation_sweep_seconds=1)
    admin, person = await new_account(pool), await new_account(pool)
    client = await make_client(settings)
    try:
        resp = await client.post(
            "/api/me/contact-methods",
            json={"type": "WEBHOOK", "target": receiver.url},
            headers=person.headers,
        )
        created = await resp.json()
        assert resp.status == 201, created
        receiver.secret = created["signing_secret"]  # what the person configures their receiver with
        await clear_rules(client, person)
        rule = {"contactMethodId": created["contact_method"]["id"], "delayMinutes": 0}
        resp = await client.post("/api/me/notification-rules", json=rule, headers=person.headers)
        assert resp.status == 201, await resp.text()
        team = await new_team(client, admin, members={"responder": person})
        policy = await new_policy(client, admin, step(5, person), team_id=team["id"])
        hook = await create(
            client, admin, {**WEBHOOK, "teamId": team["id"], "escalationPolicyId": policy["id"]}
        )
        async with worker_running(settings):
            resp = await client.post(path_of(hook), json=ALERT)
            assert resp.status == 202
            await wait_until(lambda: receiver.events, "the person's receiver got the page", timeout=30)
            # A repeat is told where the incident's pages went: the person's WEBHOOK.
            resp = await client.post(path_of(hook), json={**ALERT, "title": ALERT["title"]})
            assert resp.status == 202
            await wait_until(lambda: len(receiver.events) == 2, "the repeat was told", timeout=30)
            incident_id = next(iter(receiver.events.values()))["data"]["incident"]["id"]
            resp = await client.post(f"/api/incidents/{incident_id}/acknowledge", headers=person.headers)
            assert resp.status == 200, await resp.text()
            await wait_until(lambda: len(receiver.events) == 3, "the acknowledge was told", timeout=30)
    finally:
        await client.close()

    # Signed with the person's secret, as the page was (their target, not the webhook maker's).
    event, repeat, acknowledged = receiver.events.values()
    assert acknowledged["type"] == "incident.acknowledged" and receiver.refused == 0
    assert event["type"] == "incident.triggered" and event["data"]["title"] == ALERT["title"]
    assert event["data"]["actions"]["acknowledge"].startswith("http://monoduty.test/a/")
    assert repeat["type"] == "alert.received"
    assert repeat["data"]["incident"]["id"] == event["data"]["incident"]["id"]


def ntfy_acknowledge(fake: FakeProviders, topic: str) -> str:
    """The path of the Acknowledge button of the push sent to ``topic`` (where ntfy POSTs)."""
    [push] = [r for r in fake.requests if r.target == topic]
    button = next(b for b in push.headers["Actions"].split("; ") if "label=Acknowledge" in b)
    found = re.search(r'url="?([^,"]+)', button)
    assert found is not None, button
    url = urlsplit(found.group(1))
    return f"{url.path}?{url.query}"


async def test_every_event_reaches_the_receiver_once_and_an_acknowledge_from_a_push_is_told_once(
    receiver: Receiver, provider_settings: Settings, pool: asyncpg.Pool, redis: ArqRedis,
    fake_providers: FakeProviders,
) -> None:  # fmt: skip
    settings = chat_settings(provider_settings)
    account = await new_account(pool)
    receiver.secret = signing_secret(SECRET_KEY, str(account.user.id), receiver.url)
    topic = f"oncall-{uuid.uuid4().hex[:8]}"
    client = await make_client(settings)
    try:
        # WEBHOOK is not among notifyOnResolve (EMAIL, PUSH_NOTIF by default): a program hears all the same.
        body = {"name": "events", "notificationTypes": ["PUSH_NOTIF", "WEBHOOK"],
                "targetChannels": {"push": topic, "webhook": receiver.url}}  # fmt: skip
        hook = await create(client, account, body)
        resp = await client.post(path_of(hook), json=ALERT)
        assert resp.status == 202
        await run_worker(settings)
        [triggered] = receiver.events.values()
        number = triggered["data"]["incident"]["number"]

        # Acknowledged from the push's button (another channel); the receiver's first answer is a
        # 503, so the notice is sent twice, with one webhook-id.
        receiver.fail = [503]
        resp = await client.post(
            ntfy_acknowledge(fake_providers, topic), headers={"User-Agent": "ntfy/1.21.2"}
        )
        assert resp.status == 200, await resp.text()
        [incident_id] = [i["id"] for i in (await resp.json())["incidents"]]
        # Again, from the API: already acknowledged, so nothing new is told.
        resp = await client.post(f"/api/incidents/{incident_id}/acknowledge", headers=account.headers)
        assert resp.status == 200, await resp.text()
        await run_worker(settings)
        acknowledged = [e for e in receiver.events.values() if e["type"] == "incident.acknowledged"]
        ack_ids = [i for i in receiver.seen if receiver.events.get(i) in acknowledged]

        resp = await client.post(f"/api/incidents/{incident_id}/resolve", headers=account.headers)
        assert resp.status == 200, await resp.text()
        await run_worker(settings)
    finally:
        await client.close()

    assert len(acknowledged) == 1 and len(ack_ids) == 2 and len(set(ack_ids)) == 1  # retried, deduped
    assert [e["type"] for e in receiver.events.values()] == [
        "incident.triggered", "incident.acknowledged", "incident.resolved",
    ]  # fmt: skip
    ack, resolved = acknowledged[0]["data"], list(receiver.events.values())[2]["data"]
    assert ack["incident"]["number"] == resolved["incident"]["number"] == number
    assert ack["title"] == f"ACKNOWLEDGED #{number}: DB down" and ack["actions"] is None
    assert ack["incident"]["url"] == f"http://monoduty.test/incidents/{incident_id}"
    assert resolved["message"] == f"Incident #{number} on events was resolved by a user."
    async with pool.acquire() as conn:
        kinds = await conn.fetch(
            "SELECT kind, channel, status FROM deliveries WHERE incident_id = $1 AND alert_id IS NULL",
            uuid.UUID(incident_id),
        )
    # The push hears of the resolve (notifyOnResolve), not of the acknowledge it came from.
    assert sorted(tuple(r) for r in kinds) == [
        ("acknowledged", "WEBHOOK", "delivered"),
        ("resolved", "PUSH_NOTIF", "delivered"),
        ("resolved", "WEBHOOK", "delivered"),
    ]


async def test_a_senders_acknowledge_is_an_event_too(
    receiver: Receiver, provider_settings: Settings, pool: asyncpg.Pool, redis: ArqRedis
) -> None:
    settings = chat_settings(provider_settings)
    account = await new_account(pool)
    receiver.secret = signing_secret(SECRET_KEY, str(account.user.id), receiver.url)
    client = await make_client(settings)
    try:
        body = {
            "name": "sender acks",
            "notificationTypes": ["WEBHOOK"],
            "targetChannels": {"webhook": receiver.url},
        }
        hook = await create(client, account, body)
        for alert_body in (ALERT, {**ALERT, "action": "acknowledge"}, {**ALERT, "action": "acknowledge"}):
            resp = await client.post(path_of(hook), json=alert_body)
            assert resp.status == 202
            await run_worker(settings)
    finally:
        await client.close()

    # The second acknowledge changes nothing: nothing is told.
    events = list(receiver.events.values())
    assert [e["type"] for e in events] == ["incident.triggered", "incident.acknowledged"]
    assert events[1]["data"]["message"].endswith("was acknowledged by the sender.")


async def webhook_only(client: Any, account: Any, url: str, name: str = "received") -> dict[str, Any]:
    body = {"name": name, "notificationTypes": ["WEBHOOK"], "targetChannels": {"webhook": url}}
    return await create(client, account, body)


async def test_a_repeat_is_told_once_as_alert_received_with_its_incident_and_a_retry_is_deduped(
    receiver: Receiver, provider_settings: Settings, pool: asyncpg.Pool, redis: ArqRedis
) -> None:
    settings = chat_settings(provider_settings)
    account = await new_account(pool)
    receiver.secret = signing_secret(SECRET_KEY, str(account.user.id), receiver.url)
    client = await make_client(settings)
    try:
        hook = await webhook_only(client, account, receiver.url)
        resp = await client.post(path_of(hook), json={**ALERT, "dedup_key": "db"})
        assert resp.status == 202
        await run_worker(settings)
        # The repeat (same key): it pages nobody; the receiver's first answer to its notice is a 503.
        receiver.fail = [503]
        secret = "tok_9f8e7d6c5b4a39281706"
        repeat = {**ALERT, "dedup_key": "db", "title": "DB down again", "region": "eu-1", "api_token": secret}
        resp = await client.post(path_of(hook), json=repeat)
        assert resp.status == 202
        await run_worker(settings)
        incident_id = next(iter(receiver.events.values()))["data"]["incident"]["id"]
        # Acknowledged, the incident is still open: the next repeat is told, with its new status.
        resp = await client.post(f"/api/incidents/{incident_id}/acknowledge", headers=account.headers)
        assert resp.status == 200, await resp.text()
        resp = await client.post(path_of(hook), json={**ALERT, "dedup_key": "db"})
        assert resp.status == 202
        await run_worker(settings)
        listed = await (await client.get(f"/api/webhooks/{hook['id']}", headers=account.headers)).json()
        detail = await (await client.get(f"/api/incidents/{incident_id}", headers=account.headers)).json()
    finally:
        await client.close()

    events = list(receiver.events.values())
    assert [e["type"] for e in events] == [
        "incident.triggered", "alert.received", "incident.acknowledged", "alert.received",
    ]  # fmt: skip
    assert events[3]["data"]["incident"]["status"] == "acknowledged"
    triggered, received = events[0]["data"], events[1]["data"]
    [received_id] = [i for i, e in receiver.events.items() if e is events[1]]
    assert receiver.seen.count(received_id) == 2  # retried once, with the same webhook-id
    incident = received["incident"]
    assert incident["id"] == triggered["incident"]["id"] and incident["id"] is not None
    assert incident["number"] == triggered["incident"]["number"]
    assert incident["status"] == "triggered"
    assert incident["url"] == f"http://monoduty.test/incidents/{incident['id']}"
    assert (received["title"], received["severity"]) == ("DB down again", "critical")
    assert received["details"]["region"] == "eu-1"
    assert secret not in json.dumps(received)  # masked as the dashboard masks it
    assert received["actions"] is None and triggered["details"] is None
    # Like a sender's resolve notice, the notice is the repeat's delivery: its call succeeded
    # once the notice was handed over.
    stats = listed["webhook"]["statistics"]
    assert (stats["total_calls"], stats["successful_calls"], stats["pending_calls"]) == (3, 3, 0)
    timeline = [e["kind"] for e in detail["incident"]["timeline"] if e["delivery"] is not None]
    assert timeline == ["page", "alert_received_notice", "acknowledged_notice", "alert_received_notice"]
    [retried] = [
        e["delivery"]
        for e in detail["incident"]["timeline"]
        if e["delivery"] and e["delivery"]["attempts"] == 2
    ]
    assert f"msg_{retried['id']}" == received_id


async def test_a_burst_of_one_key_sends_at_most_the_cap_of_alert_received(
    receiver: Receiver, provider_settings: Settings, pool: asyncpg.Pool, redis: ArqRedis
) -> None:
    cap = 3
    settings = chat_settings(provider_settings, storm_threshold=cap)
    account = await new_account(pool)
    receiver.secret = signing_secret(SECRET_KEY, str(account.user.id), receiver.url)
    client = await make_client(settings)
    try:
        hook = await webhook_only(client, account, receiver.url, name="burst")
        for n in range(25):
            resp = await client.post(path_of(hook), json={**ALERT, "n": n})
            assert resp.status == 202
        await run_worker(settings)
        listed = await (await client.get(f"/api/webhooks/{hook['id']}", headers=account.headers)).json()
        [incident] = (await (await client.get("/api/incidents", headers=account.headers)).json())["incidents"]
    finally:
        await client.close()

    types = sorted(e["type"] for e in receiver.events.values())  # sent concurrently: in any order
    assert types == ["alert.received"] * cap + ["incident.triggered"]  # 25 alerts, 1 + 3 POSTs
    assert len(receiver.seen) == cap + 1
    assert incident["alert_count"] == 25  # the others are counted in the incident, not told
    stats = listed["webhook"]["statistics"]
    assert (stats["total_calls"], stats["successful_calls"]) == (25, 25)


QUIET = {
    "silence": ("/api/silences", {"matchers": [{"name": "severity", "value": "critical"}], "duration": "1h",
                                  "comment": "known"}),
    "maintenance": ("/api/maintenance-windows", {"duration": "1h", "reason": "DB upgrade"}),
}  # fmt: skip


@pytest.mark.parametrize("quiet", sorted(QUIET))
async def test_a_silenced_repeat_or_one_in_maintenance_is_not_told(
    receiver: Receiver, provider_settings: Settings, pool: asyncpg.Pool, redis: ArqRedis, quiet: str
) -> None:
    settings = chat_settings(provider_settings)
    account = await new_account(pool)
    receiver.secret = signing_secret(SECRET_KEY, str(account.user.id), receiver.url)
    client = await make_client(settings)
    try:
        hook = await webhook_only(client, account, receiver.url, name="silenced")
        resp = await client.post(path_of(hook), json=ALERT)
        assert resp.status == 202
        await run_worker(settings)
        route, body = QUIET[quiet]
        resp = await client.post(route, json={**body, "webhookId": hook["id"]}, headers=account.headers)
        assert resp.status == 201, await resp.text()
        resp = await client.post(path_of(hook), json=ALERT)
        assert resp.status == 202
        await run_worker(settings)
    finally:
        await client.close()

    assert [e["type"] for e in receiver.events.values()] == ["incident.triggered"]
