"""A body over the inbound limit: the sender gets its 413, and the owner is paged once per burst
("alerts refused: payload too large from ..."), so a human learns that alerts are being lost."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import asyncpg
from aiohttp.test_utils import TestClient
from arq.connections import ArqRedis

from engine.settings import Settings
from tests.support.factories import WEBHOOK, Account, assert_error, create, path_of, run_worker
from tests.support.providers import FakeProviders, SmtpServer

AM_FIRING = Path(__file__).parent / "data" / "alertmanager" / "01-firing.json"
ALERTMANAGER = {"Content-Type": "application/json", "User-Agent": "Alertmanager/0.25.0"}


def big_group(alerts: int) -> bytes:
    """A recorded Alertmanager notification, its group grown to ``alerts`` alerts."""
    group = json.loads(AM_FIRING.read_text())
    first = group["alerts"][0]
    group["alerts"] = [
        {
            **first,
            "labels": {**first["labels"], "instance": f"api-{n}:9100"},
            "annotations": {**first["annotations"], "summary": f"5xx rate above 5% on api-{n}:9100"},
            "fingerprint": f"{n:016x}",
        }
        for n in range(alerts)
    ]
    return json.dumps(group).encode()


async def refused_incidents(pool: asyncpg.Pool, webhook: dict[str, Any]) -> list[asyncpg.Record]:
    async with pool.acquire() as conn:
        return await conn.fetch(
            "SELECT title, message, alert_count, status FROM incidents WHERE webhook_id = $1",
            uuid.UUID(webhook["id"]),
        )


async def test_an_oversized_alertmanager_group_is_413_and_pages_the_owner_once(
    live: TestClient,
    account: Account,
    pool: asyncpg.Pool,
    provider_settings: Settings,
    fake_providers: FakeProviders,
    smtp_server: SmtpServer,
) -> None:
    webhook = await create(live, account, WEBHOOK)
    body = big_group(2500)
    assert len(body) > provider_settings.inbound_body_limit  # about 1.3 MB
    resp = await live.post(path_of(webhook), data=body, headers=ALERTMANAGER)
    assert resp.status == 413
    assert_error(await resp.json(), "PAYLOAD_TOO_LARGE")
    await run_worker(provider_settings)

    [incident] = await refused_incidents(pool, webhook)
    assert incident["title"] == "alerts refused: payload too large from Alertmanager/0.25.0 at 127.0.0.1"
    assert f"A request of {len(body):,} bytes" in incident["message"]
    assert (incident["alert_count"], incident["status"]) == (1, "triggered")
    # Paged like any other incident: one SMS, one call, one push, one email.
    assert sorted(r.kind for r in fake_providers.requests) == ["call", "push", "sms"]
    assert len(smtp_server.messages) == 1
    assert "payload too large" in smtp_server.messages[0]["Subject"]

    # The burst goes on: a second refusal joins the incident and pages nobody.
    resp = await live.post(path_of(webhook), data=body, headers=ALERTMANAGER)
    assert resp.status == 413
    await run_worker(provider_settings)
    [incident] = await refused_incidents(pool, webhook)
    assert incident["alert_count"] == 2
    assert len(fake_providers.requests) == 3 and len(smtp_server.messages) == 1


async def test_an_oversized_body_at_an_unknown_url_makes_nothing(
    client: TestClient, redis: ArqRedis, settings: Settings
) -> None:
    resp = await client.post("/" + "u" * 40, data=b"x" * (settings.inbound_body_limit + 1))
    assert resp.status == 404
    assert await redis.zcard(settings.queue_name) == 0  # nothing queued: no incident for anyone


async def test_an_oversized_body_to_a_paused_webhook_pages_nobody(
    client: TestClient, account: Account, redis: ArqRedis, settings: Settings
) -> None:
    webhook = await create(client, account)
    resp = await client.patch(
        f"/api/webhooks/{webhook['id']}", json={"status": "PAUSED"}, headers=account.headers
    )
    assert resp.status == 200
    resp = await client.post(path_of(webhook), data=b"x" * (settings.inbound_body_limit + 1))
    assert resp.status == 409  # paused comes first: the sender learns why
    assert await redis.zcard(settings.queue_name) == 0
