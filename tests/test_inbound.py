"""POST /<token>: what a monitoring system sees when it sends an alert."""

from __future__ import annotations

import asyncpg
from aiohttp.test_utils import TestClient
from arq.connections import ArqRedis

from api.state import POOL
from engine.settings import Settings
from tests.support.factories import (
    FULL,
    Account,
    assert_error,
    counts,
    create,
    outbox,
    path_of,
    run_worker,
)


async def test_alert_is_accepted_then_delivered_on_every_channel(
    client: TestClient, account: Account, pool: asyncpg.Pool, settings: Settings
) -> None:
    webhook = await create(client, account)
    body = {"title": "DB down", "message": "primary unreachable", "severity": "critical"}
    resp = await client.post(path_of(webhook), json=body)
    assert resp.status == 202
    data = await resp.json()
    assert data["success"] is True and data["status"] == "queued"

    await run_worker(settings)

    sent = await outbox(pool, data["alert_id"])
    assert [(r["channel"], r["target"]) for r in sent] == [
        ("CALL", "+14155550124"),
        ("CALL", "+14155550125"),
        ("EMAIL", "admin@company.com"),
        ("PUSH_NOTIF", "prod-alerts"),
        ("SMS", "+14155550123"),
    ]
    assert all(r["subject"] == "[CRITICAL] #1 DB down" for r in sent)
    assert all("primary unreachable" in r["body"] for r in sent)
    stats = await (await client.get(f"/api/webhooks/{webhook['id']}", headers=account.headers)).json()
    assert stats["webhook"]["statistics"] == counts(1, 1, 0)


async def test_hooks_prefix_form_and_text_bodies(
    client: TestClient, account: Account, pool: asyncpg.Pool, settings: Settings
) -> None:
    webhook = await create(client, account, {**FULL, "notificationTypes": ["EMAIL"]})
    token_path = path_of(webhook)
    form = await client.post(f"/hooks{token_path}", data={"title": "Disk full", "severity": "warning"})
    text = await client.post(
        token_path, data=b"Backup failed\nexit code 3", headers={"Content-Type": "text/plain"}
    )
    broken = await client.post(
        token_path, data=b'{"title": "half', headers={"Content-Type": "application/json"}
    )
    assert (form.status, text.status, broken.status) == (202, 202, 202)
    await run_worker(settings)
    subjects = [
        (await outbox(pool, (await r.json())["alert_id"]))[0]["subject"] for r in (form, text, broken)
    ]
    assert subjects[0] == "[WARNING] #1 Disk full"
    assert subjects[1].endswith("Backup failed")
    # a malformed JSON body is kept as text, not rejected
    assert '{"title": "half' in subjects[2]


async def test_unknown_token_is_404(client: TestClient) -> None:
    resp = await client.post("/" + "x" * 32, json={"title": "hi"})
    assert resp.status == 404
    assert_error(await resp.json(), "WEBHOOK_NOT_FOUND")


async def test_body_over_the_limit_is_413(client: TestClient, account: Account, settings: Settings) -> None:
    webhook = await create(client, account)
    resp = await client.post(path_of(webhook), data=b"x" * (settings.inbound_body_limit + 1))
    assert resp.status == 413
    assert_error(await resp.json(), "PAYLOAD_TOO_LARGE")


async def test_paused_webhook_refuses_and_deleted_webhook_is_gone(
    client: TestClient, account: Account, redis: ArqRedis
) -> None:
    webhook = await create(client, account)
    url = f"/api/webhooks/{webhook['id']}"
    assert (await client.post(path_of(webhook), json={"title": "warm the cache"})).status == 202
    await client.patch(url, json={"status": "PAUSED"}, headers=account.headers)
    resp = await client.post(path_of(webhook), json={"title": "while paused"})
    assert resp.status == 409
    assert_error(await resp.json(), "WEBHOOK_PAUSED")
    await client.patch(url, json={"status": "ACTIVE"}, headers=account.headers)
    assert (await client.post(path_of(webhook), json={"title": "resumed"})).status == 202
    await client.delete(url, headers=account.headers)
    resp = await client.post(path_of(webhook), json={"title": "after delete"})
    assert resp.status == 404


async def test_steady_state_needs_no_postgres(client: TestClient, account: Account, redis: ArqRedis) -> None:
    """Once a token is known, alerts are accepted even while PostgreSQL is unreachable."""
    webhook = await create(client, account)
    assert (await client.post(path_of(webhook), json={"title": "first"})).status == 202
    await client.server.app[POOL].close()
    resp = await client.post(path_of(webhook), json={"title": "database is down"})
    assert resp.status == 202
    queued = await redis.zcard("arq:queue")
    assert queued == 2


async def test_deleted_webhook_with_queued_alerts_delivers_nothing(
    client: TestClient, account: Account, pool: asyncpg.Pool, settings: Settings
) -> None:
    webhook = await create(client, account)
    resp = await client.post(path_of(webhook), json={"title": "in flight"})
    await client.delete(f"/api/webhooks/{webhook['id']}", headers=account.headers)
    await run_worker(settings)
    assert await outbox(pool, (await resp.json())["alert_id"]) == []


async def test_test_send_is_marked_and_not_counted(
    client: TestClient, account: Account, pool: asyncpg.Pool, settings: Settings
) -> None:
    webhook = await create(client, account)
    resp = await client.post(f"/api/webhooks/{webhook['id']}/test", headers=account.headers)
    assert resp.status == 202
    alert_id = (await resp.json())["alert_id"]
    await run_worker(settings)
    sent = await outbox(pool, alert_id)
    assert len(sent) == 5
    assert all(r["subject"].startswith("[TEST] ") for r in sent)
    data = (await (await client.get(f"/api/webhooks/{webhook['id']}", headers=account.headers)).json())[
        "webhook"
    ]
    assert data["statistics"]["total_calls"] == 0
    assert data["last_test"]["alert_id"] == alert_id
    assert data["last_test"]["status"] == "successful"
    assert {d["status"] for d in data["last_test"]["deliveries"]} == {"delivered"}
