"""50 alerts of one dedup key at once, taken by two real `monoduty worker` processes: one incident
of 50 alerts, one page per channel (the unique index and ON CONFLICT, not a read-then-write)."""

from __future__ import annotations

import asyncio
import subprocess

import asyncpg
from aiohttp.test_utils import TestClient

from tests.support.factories import Account, create, path_of
from tests.support.processes import ROOT, dies_with_us, monoduty_argv, monoduty_env, wait_until
from tests.support.providers import NTFY_TOKEN, TWILIO_SID, TWILIO_TOKEN, FakeProviders, SmtpServer
from tests.support.services import Services

ALERTS = 50


async def test_fifty_alerts_of_one_key_on_two_workers_make_one_incident_and_page_once(
    services: Services,
    live: TestClient,
    account: Account,
    pool: asyncpg.Pool,
    fake_providers: FakeProviders,
    smtp_server: SmtpServer,
) -> None:
    webhook = await create(
        live,
        account,
        {
            "name": "Storm",
            "notificationTypes": ["EMAIL", "SMS", "PUSH_NOTIF", "CALL"],
            "targetChannels": {
                "email": "oncall@example.com",
                "sms": "+14155550123",
                "push": "storm",
                "call": "+14155550124",
            },
        },
    )
    env = monoduty_env(
        MONODUTY_DATABASE_URL=services.database_url,
        MONODUTY_REDIS_URL=services.redis_url,
        MONODUTY_SMTP_HOST=smtp_server.host,
        MONODUTY_SMTP_PORT=str(smtp_server.port),
        MONODUTY_SMTP_TLS="none",
        MONODUTY_SMTP_FROM="alerts@monoduty.test",
        MONODUTY_TWILIO_ACCOUNT_SID=TWILIO_SID,
        MONODUTY_TWILIO_AUTH_TOKEN=TWILIO_TOKEN,
        MONODUTY_TWILIO_FROM="+15005550006",
        MONODUTY_TWILIO_BASE_URL=fake_providers.url,
        MONODUTY_NTFY_URL=fake_providers.url,
        MONODUTY_NTFY_TOKEN=NTFY_TOKEN,
        MONODUTY_WORKER_POLL_DELAY="0.01",
    )
    workers = [
        subprocess.Popen(
            monoduty_argv("worker"),
            env=env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=dies_with_us(),
        )
        for _ in range(2)
    ]
    try:
        body = {
            "routing_key": "r" * 32,
            "event_action": "trigger",
            "dedup_key": "db-primary-down",
            "payload": {"summary": "Primary database down", "source": "db-1", "severity": "critical"},
        }
        answers = await asyncio.gather(*(live.post(path_of(webhook), json=body) for _ in range(ALERTS)))
        assert [a.status for a in answers] == [202] * ALERTS

        async def all_final() -> bool:
            async with pool.acquire() as conn:
                return await conn.fetchval(
                    "SELECT count(*) FROM alerts WHERE webhook_id = $1 AND status <> 'pending'", webhook["id"]
                ) == ALERTS and not await conn.fetchval(
                    "SELECT count(*) FROM deliveries d JOIN alerts a ON a.id = d.alert_id"
                    " WHERE a.webhook_id = $1 AND d.status = 'pending'",
                    webhook["id"],
                )

        await wait_until(all_final, "every alert to be final", timeout=60)
    finally:
        for worker in workers:
            worker.terminate()
        for worker in workers:
            worker.wait(30)

    async with pool.acquire() as conn:
        incidents = await conn.fetch(
            "SELECT number, alert_count, status FROM incidents WHERE webhook_id = $1", webhook["id"]
        )
    assert [tuple(i) for i in incidents] == [(1, ALERTS, "triggered")]
    sent = sorted((r.kind, r.target) for r in fake_providers.requests)
    assert len(sent) == 3, sent  # one SMS, one call, one push
    assert len(smtp_server.messages) == 1
