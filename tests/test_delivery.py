"""Alerts end to end over real protocols: the app, a real arq worker, SMTP, Twilio and ntfy servers."""

from __future__ import annotations

import json

import asyncpg
from aiohttp.test_utils import TestClient
from arq.connections import ArqRedis

from engine import queue
from engine.settings import Settings
from tests.support.factories import (
    ALERT,
    WEBHOOK,
    Account,
    counts,
    deliveries,
    path_of,
    run_worker,
    send_alert,
    statistics,
)
from tests.support.providers import (
    FakeProviders,
    Reply,
    SmtpServer,
)


async def test_an_alert_reaches_every_channel(
    live: TestClient,
    account: Account,
    provider_settings: Settings,
    fake_providers: FakeProviders,
    smtp_server: SmtpServer,
) -> None:
    webhook, _ = await send_alert(live, account)
    await run_worker(provider_settings)

    [mail] = smtp_server.messages
    assert "DB down" in mail["Subject"]
    assert mail["To"] == "oncall@example.com"
    assert "primary unreachable" in mail.get_body(("plain",)).get_content()

    by_kind = {r.kind: r for r in fake_providers.requests}
    assert by_kind["sms"].form["To"] == "+14155550123"
    assert by_kind["sms"].form["From"] == "+15005550006"
    assert "DB down" in by_kind["sms"].form["Body"]
    assert by_kind["call"].form["To"] == "+14155550124"
    assert "<Say" in by_kind["call"].form["Twiml"] and "DB down" in by_kind["call"].form["Twiml"]
    assert by_kind["push"].target == "prod-alerts"
    assert "DB down" in by_kind["push"].headers["Title"]
    assert by_kind["push"].headers["Priority"] == "5"
    assert "primary unreachable" in by_kind["push"].body

    assert await statistics(live, account, webhook) == counts(1, 1, 0)


async def test_transient_failures_are_retried_and_counted_once(
    live: TestClient,
    account: Account,
    pool: asyncpg.Pool,
    provider_settings: Settings,
    fake_providers: FakeProviders,
) -> None:
    fake_providers.script("+14155550123", Reply(500), Reply(500))
    webhook, alert_id = await send_alert(live, account)
    await run_worker(provider_settings)

    sms = (await deliveries(pool, alert_id))["SMS"]
    assert (sms["status"], sms["attempts"]) == ("delivered", 3)
    assert sms["provider_id"].startswith("SM")
    assert [r.target for r in fake_providers.requests if r.kind == "sms"] == ["+14155550123"] * 3
    assert await statistics(live, account, webhook) == counts(1, 1, 0)


async def test_permanent_failure_fails_at_once(
    live: TestClient,
    account: Account,
    pool: asyncpg.Pool,
    provider_settings: Settings,
    fake_providers: FakeProviders,
) -> None:
    fake_providers.script(
        "+14155550123", Reply(400, json={"code": 21211, "message": "The 'To' number is not valid"})
    )
    webhook, alert_id = await send_alert(live, account)
    await run_worker(provider_settings)

    rows = await deliveries(pool, alert_id)
    assert (rows["SMS"]["status"], rows["SMS"]["attempts"]) == ("failed", 1)
    assert "400" in rows["SMS"]["last_error"] and "not valid" in rows["SMS"]["last_error"]
    assert {rows[k]["status"] for k in ("EMAIL", "CALL", "PUSH_NOTIF")} == {"delivered"}
    assert await statistics(live, account, webhook) == counts(1, 0, 1)


async def test_attempts_stop_at_the_limit(
    live: TestClient,
    account: Account,
    pool: asyncpg.Pool,
    provider_settings: Settings,
    fake_providers: FakeProviders,
) -> None:
    fake_providers.script("prod-alerts", *[Reply(503)] * 10)
    webhook, alert_id = await send_alert(live, account)
    await run_worker(provider_settings)

    push = (await deliveries(pool, alert_id))["PUSH_NOTIF"]
    assert (push["status"], push["attempts"]) == ("failed", provider_settings.max_attempts)
    assert "503" in push["last_error"]
    assert len([r for r in fake_providers.requests if r.kind == "push"]) == provider_settings.max_attempts
    assert (await statistics(live, account, webhook))["failed_calls"] == 1


async def test_retry_after_is_honoured(
    live: TestClient,
    account: Account,
    pool: asyncpg.Pool,
    provider_settings: Settings,
    fake_providers: FakeProviders,
) -> None:
    fake_providers.script("+14155550124", Reply(429, headers={"Retry-After": "1"}))
    _, alert_id = await send_alert(live, account)
    await run_worker(provider_settings)
    call = (await deliveries(pool, alert_id))["CALL"]
    assert (call["status"], call["attempts"]) == ("delivered", 2)
    # the second attempt waited at least the second the provider asked for
    assert (call["last_attempt_at"] - call["created_at"]).total_seconds() >= 1.0


async def test_rerunning_the_same_jobs_changes_nothing(
    live: TestClient,
    account: Account,
    pool: asyncpg.Pool,
    redis: ArqRedis,
    provider_settings: Settings,
    fake_providers: FakeProviders,
    smtp_server: SmtpServer,
) -> None:
    """arq runs a job again when its worker died: every step must be idempotent."""
    webhook, alert_id = await send_alert(live, account)
    await run_worker(provider_settings)
    before = (
        await statistics(live, account, webhook),
        len(fake_providers.requests),
        len(smtp_server.messages),
    )
    rows = await deliveries(pool, alert_id)

    # Forget the results, as if the worker had died before recording them, and queue the same jobs.
    await redis.delete(*[f"arq:result:{i}" for i in [alert_id, *[str(r["id"]) for r in rows.values()]]])
    await queue.enqueue_alert(
        redis,
        alert_id,
        webhook["id"],
        body=json.dumps(ALERT),
        content_type="application/json",
        received_at=rows["SMS"]["created_at"],
    )
    for row in rows.values():
        await queue.enqueue_delivery(redis, str(row["id"]))
    await run_worker(provider_settings)

    after = (
        await statistics(live, account, webhook),
        len(fake_providers.requests),
        len(smtp_server.messages),
    )
    assert after == before
    assert len(await deliveries(pool, alert_id)) == 4


class BrokenChannel:
    """A channel with a bug: it raises something other than DeliveryError."""

    type = "SMS"

    async def send(self, message: object, target: str) -> None:
        raise RuntimeError("a bug in a channel")


async def test_a_channel_bug_ends_the_delivery_instead_of_leaving_it_pending(
    client: TestClient, account: Account, pool: asyncpg.Pool, settings: Settings
) -> None:
    from workers import worker as worker_module

    resp = await client.post(
        "/api/webhooks",
        json={**WEBHOOK, "notificationTypes": ["SMS", "EMAIL"]},
        headers=account.headers,
    )
    webhook = (await resp.json())["webhook"]
    alert_id = (await (await client.post(path_of(webhook), json=ALERT)).json())["alert_id"]

    async def startup(ctx: dict) -> None:
        await worker_module._startup(ctx)
        ctx["channels"]["SMS"] = BrokenChannel()

    worker = worker_module.build_worker(settings.with_(max_attempts=2), burst=True, on_startup=startup)
    try:
        await worker.main()
    finally:
        await worker.close()
    rows = await deliveries(pool, alert_id)
    assert (rows["SMS"]["status"], rows["SMS"]["attempts"]) == ("failed", 2)
    assert "unexpected error in the SMS channel (RuntimeError)" in rows["SMS"]["last_error"]
    assert rows["EMAIL"]["status"] == "delivered"
    assert (await statistics(client, account, webhook))["failed_calls"] == 1
