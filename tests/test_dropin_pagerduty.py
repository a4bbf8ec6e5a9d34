"""The PagerDuty Events API v2, drop-in: the official clients (pdpyras 5.4 over HTTP, pagerduty 7.2
over HTTPS, which it insists on) pointed at Monoduty work unchanged, and get PagerDuty's answers."""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import warnings
from typing import Any

import asyncpg
import pagerduty
import pytest
from aiohttp.test_utils import TestClient
from arq.connections import ArqRedis

from engine.settings import RateLimit, Settings
from tests.support.factories import (
    WEBHOOK,
    Account,
    create,
    make_client,
    path_of,
    run_worker,
    signed_webhook,
    standard,
)
from tests.support.incidents import pages_and_notices, sent, webhook_incidents

with warnings.catch_warnings():
    warnings.simplefilter("ignore", UserWarning)  # "pdpyras is deprecated": it is what users still run
    import pdpyras

pytestmark = pytest.mark.usefixtures("loopback_only")

INVALID = {"status": "invalid event", "message": "Event object is invalid"}


def token_of(webhook: dict[str, Any]) -> str:
    return path_of(webhook).lstrip("/")


def events_session(client: TestClient, routing_key: str, base: str = "") -> pdpyras.EventsAPISession:
    """pdpyras as its users set it up; only its base URL points here (loopback, no proxies)."""
    session = pdpyras.EventsAPISession(routing_key)
    session.url = str(client.make_url(base)).rstrip("/")
    session.trust_env = False
    return session


async def post_event(client: TestClient, path: str, body: object) -> tuple[int, dict[str, Any]]:
    resp = await client.post(path, data=json.dumps(body), headers={"Content-Type": "application/json"})
    return resp.status, await resp.json()


def trigger(routing_key: str | None, **extra: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "event_action": "trigger",
        "payload": {"summary": "Disk 95% full on db-1", "source": "db-1", "severity": "critical"},
        **extra,
    }
    return {"routing_key": routing_key, **event} if routing_key is not None else event


async def test_pdpyras_triggers_acknowledge_resolve_make_one_incident_paged_once(
    client: TestClient, account: Account, pool: asyncpg.Pool, settings: Settings
) -> None:
    webhook = await create(client, account, WEBHOOK)
    session = events_session(client, token_of(webhook))
    # The first trigger names no key: Monoduty makes one, as PagerDuty does, and the client
    # reads it from the 202 to send the rest.
    key = await asyncio.to_thread(session.trigger, "Disk 95% full on db-1", "db-1", severity="critical")
    assert key
    await run_worker(settings)
    for _ in range(2):
        repeat = await asyncio.to_thread(session.trigger, "Disk 95% full on db-1", "db-1", dedup_key=key)
        assert repeat == key
        await run_worker(settings)
    assert await asyncio.to_thread(session.acknowledge, key) == key
    await run_worker(settings)
    assert await asyncio.to_thread(session.resolve, key) == key
    await run_worker(settings)

    [found] = await webhook_incidents(client, account, webhook)
    assert found["dedup_key"] == key
    assert found["status"] == "resolved"
    assert found["alert_count"] == 5
    by_sender = {"type": "sender", "user_id": None}
    assert found["acknowledged_by"] == by_sender and found["resolved_by"] == by_sender
    outbox = await sent(pool, webhook)
    pages, notices = pages_and_notices(outbox)
    assert pages == ["CALL", "EMAIL", "PUSH_NOTIF", "SMS"]  # one page per channel, for the first
    assert notices == ["EMAIL", "PUSH_NOTIF"]  # the resolve never rings a phone
    assert [channel for channel, _ in outbox].count("CALL") == 1


async def test_pdpyras_at_the_webhook_url_ignores_the_old_routing_key(
    client: TestClient, account: Account, settings: Settings
) -> None:
    webhook = await create(client, account, WEBHOOK)
    # A sender moving over changes only its URL and keeps its PagerDuty integration key.
    session = events_session(client, "0123456789abcdef0123456789abcdef", base=path_of(webhook))
    key = await asyncio.to_thread(session.trigger, "Queue backlog", "worker-3", dedup_key="backlog-3")
    assert key == "backlog-3"
    await run_worker(settings)
    assert await asyncio.to_thread(session.resolve, key) == key
    await run_worker(settings)
    [found] = await webhook_incidents(client, account, webhook)
    assert (found["dedup_key"], found["status"], found["title"]) == ("backlog-3", "resolved", "Queue backlog")


async def test_pagerduty_72_over_https_triggers_and_resolves(
    client: TestClient,
    account: Account,
    settings: Settings,
    tls_server: tuple[str, ssl.SSLContext],
) -> None:
    url, trusting = tls_server
    assert url.startswith("https://127.0.0.1:")
    webhook = await create(client, account, WEBHOOK)
    # As a sender moving over sets it up: its old integration key, Monoduty's webhook URL as base.
    events = pagerduty.EventsApiV2Client(
        "0123456789abcdef0123456789abcdef",
        base_url=f"{url}{path_of(webhook)}",
        verify=trusting,
        trust_env=False,
    )
    try:
        key = await asyncio.to_thread(events.trigger, "API 5xx above 2%", "api-gw", severity="error")
        await run_worker(settings)
        assert await asyncio.to_thread(events.resolve, key) == key
        await run_worker(settings)
    finally:
        events.close()
    [found] = await webhook_incidents(client, account, webhook)
    assert (found["dedup_key"], found["status"], found["severity"]) == (key, "resolved", "error")


@pytest.mark.parametrize(
    ("change", "errors"),
    [
        ({"routing_key": None}, ["'routing_key' is missing or blank"]),
        (
            {"event_action": "escalate"},
            ["'event_action' is invalid (must be one of trigger, acknowledge, resolve)"],
        ),
        ({"event_action": None}, ["'event_action' is missing or blank"]),
        ({"payload": None}, ["'payload' is missing or not an object"]),
        (
            {"payload": {"severity": "critical"}},
            ["'payload.summary' is missing or blank", "'payload.source' is missing or blank"],
        ),
        (
            {"payload": {"summary": "x", "source": "y", "severity": "sev1"}},
            ["'payload.severity' is invalid (must be one of critical, error, warning, info)"],
        ),
        (
            {"event_action": "resolve", "payload": None},
            ["'dedup_key' is missing or blank (required to resolve)"],
        ),
        ({"dedup_key": "k" * 256}, ["Length of 'dedup_key' is incorrect (should be at most 255 characters)"]),
    ],
)
async def test_a_bad_event_is_pagerdutys_400_naming_the_field(
    client: TestClient, account: Account, redis: ArqRedis, change: dict[str, Any], errors: list[str]
) -> None:
    webhook = await create(client, account, WEBHOOK)
    body = {**trigger(token_of(webhook)), **change}
    body = {k: v for k, v in body.items() if v is not None}
    status, answer = await post_event(client, "/v2/enqueue", body)
    assert (status, answer) == (400, {**INVALID, "errors": errors})
    assert await redis.zcard("arq:queue") == 0  # nothing queued


async def test_not_json_and_unknown_keys_are_400_and_the_url_token_is_the_credential(
    client: TestClient, account: Account, redis: ArqRedis
) -> None:
    resp = await client.post("/v2/enqueue", data=b"{not json", headers={"Content-Type": "application/json"})
    assert resp.status == 400
    assert (await resp.json())["errors"] == ["Event object is not valid JSON"]
    unknown = {**INVALID, "errors": ["Invalid routing key"]}
    assert await post_event(client, "/v2/enqueue", trigger("a" * 32)) == (400, unknown)
    assert await post_event(client, "/v2/enqueue", trigger("not a token")) == (400, unknown)
    assert await post_event(client, f"/{'b' * 32}/v2/enqueue", trigger(None)) == (400, unknown)
    # The URL's token is checked before the body is read: a bad body there is still "who are you".
    resp = await client.post(f"/{'b' * 32}/v2/enqueue", data=b"{not json")
    assert (resp.status, (await resp.json())["errors"]) == (400, ["Invalid routing key"])
    webhook = await create(client, account, WEBHOOK)
    status, answer = await post_event(client, f"{path_of(webhook)}/v2/enqueue", {"event_action": "trigger"})
    assert (status, answer["errors"]) == (400, ["'payload' is missing or not an object"])
    assert await redis.zcard("arq:queue") == 0


async def test_the_202_is_pagerdutys_and_a_blank_key_gets_one_made(
    client: TestClient, account: Account, pool: asyncpg.Pool, settings: Settings
) -> None:
    webhook = await create(client, account, WEBHOOK)
    status, answer = await post_event(client, "/v2/enqueue", trigger(token_of(webhook), dedup_key=""))
    assert status == 202
    assert set(answer) == {"status", "message", "dedup_key"}
    assert (answer["status"], answer["message"]) == ("success", "Event processed")
    assert len(answer["dedup_key"]) == 32
    await run_worker(settings)
    [found] = await webhook_incidents(client, account, webhook)
    assert found["dedup_key"] == answer["dedup_key"]  # a resolve with it will find the incident


async def test_paused_and_rate_limited_answer_in_pagerdutys_shape(
    settings: Settings, redis: ArqRedis, account: Account
) -> None:
    client = await make_client(settings.with_(rate_limit_inbound=RateLimit(2, 60)))
    try:
        paused = await create(client, account, WEBHOOK)
        resp = await client.patch(
            f"/api/webhooks/{paused['id']}", json={"status": "PAUSED"}, headers=account.headers
        )
        assert resp.status == 200
        status, answer = await post_event(client, f"{path_of(paused)}/v2/enqueue", trigger(None))
        assert status == 409
        assert answer["status"] == "error" and "paused" in answer["message"]

        webhook = await create(client, account, WEBHOOK)
        path = f"{path_of(webhook)}/v2/enqueue"
        for _ in range(2):
            assert (await post_event(client, path, trigger(None)))[0] == 202
        resp = await client.post(path, json=trigger(None))
        assert resp.status == 429 and int(resp.headers["Retry-After"]) > 0
        assert (await resp.json())["status"] == "throttle event"

        # Guessing routing keys is limited per address as guessing URLs is; past the limit the
        # body is not even read.
        for guess in ("c" * 32, "d" * 32):
            assert (await post_event(client, "/v2/enqueue", trigger(guess)))[0] == 400
        status, answer = await post_event(client, "/v2/enqueue", trigger(token_of(paused)))
        assert (status, answer["status"]) == (429, "throttle event")
        assert "unknown webhook" in answer["message"]
    finally:
        await client.close()


def test_the_guard_keeps_these_tests_on_loopback() -> None:
    # The clients' default URLs are PagerDuty's; whatever a test gets wrong, nothing leaves here.
    with pytest.raises(ConnectionRefusedError, match="test guard"):
        socket.create_connection(("192.0.2.1", 443), timeout=1)
    with pytest.raises(ConnectionRefusedError, match="test guard"):
        socket.create_connection(("2001:db8::1", 443), timeout=1)


async def test_a_signed_webhook_wants_its_signature_on_the_event_as_sent(
    client: TestClient, account: Account, settings: Settings
) -> None:
    webhook = await signed_webhook(client, account)
    path = f"{path_of(webhook)}/v2/enqueue"
    body = json.dumps(trigger(None, dedup_key="signed-1")).encode()
    resp = await client.post(path, data=body, headers={"Content-Type": "application/json"})
    assert resp.status == 401
    assert (await resp.json())["status"] == "error"  # PagerDuty's shape, Monoduty's 401
    signed = standard(body)
    for _ in range(2):  # the second is the sender's retry: answered alike, queued once
        resp = await client.post(path, data=body, headers=signed)
        assert resp.status == 202, await resp.text()
        assert (await resp.json())["dedup_key"] == "signed-1"
    await run_worker(settings)
    [found] = await webhook_incidents(client, account, webhook)
    assert (found["dedup_key"], found["alert_count"]) == ("signed-1", 1)
