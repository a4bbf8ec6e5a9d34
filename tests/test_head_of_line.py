"""One hung provider cannot starve the other channels (head-of-line blocking).

A real worker process with 20 job slots and 5 send slots per channel; a local ntfy that hangs on
one topic. Thirty alerts to that topic fill its 5 slots; the other 25 deliveries wait out of arq's
job slots, so an email alert on another webhook is still delivered while they hang, and once the
provider answers (or times out) every waiting delivery ends, with only its real attempts counted.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
from aiohttp.test_utils import TestClient
from arq.connections import ArqRedis
from arq.constants import result_key_prefix

from engine import queue
from tests.support.factories import Account, counts, create, path_of
from tests.support.faults import WorkerProcess
from tests.support.processes import wait_until
from tests.support.providers import NTFY_TOKEN, FakeProviders, Reply, SmtpServer
from tests.support.services import Services

HUNG_TOPIC = "hung-topic"
HUNG_ALERTS = 30
CHANNEL_SLOTS = 5


def start_worker(
    tmp_path: Path, services: Services, fake: FakeProviders, smtp: SmtpServer, **env: str
) -> WorkerProcess:
    settings = {
        "MONODUTY_DATABASE_URL": services.database_url,
        "MONODUTY_REDIS_URL": services.redis_url,
        "MONODUTY_NTFY_URL": fake.url,
        "MONODUTY_NTFY_TOKEN": NTFY_TOKEN,
        "MONODUTY_SMTP_HOST": smtp.host,
        "MONODUTY_SMTP_PORT": str(smtp.port),
        "MONODUTY_SMTP_TLS": "none",
        "MONODUTY_SMTP_FROM": "alerts@monoduty.test",
        "MONODUTY_WORKER_CONCURRENCY": "20",
        "MONODUTY_CHANNEL_CONCURRENCY": str(CHANNEL_SLOTS),
        "MONODUTY_RETRY_BASE_DELAY": "0.01",
        **env,
    }
    return WorkerProcess(tmp_path / "worker.log", **settings)


@pytest.fixture
def worker_env() -> dict[str, str]:
    """A provider timeout far beyond the test: the hung sends stay hung until released."""
    return {"MONODUTY_PROVIDER_TIMEOUT": "300", "MONODUTY_JOB_TIMEOUT": "400"}


@pytest.fixture
def worker(
    tmp_path: Path,
    services: Services,
    fake_providers: FakeProviders,
    smtp_server: SmtpServer,
    worker_env: dict[str, str],
    redis: ArqRedis,
) -> Iterator[WorkerProcess]:
    process = start_worker(tmp_path, services, fake_providers, smtp_server, **worker_env)
    yield process
    fake_providers.release()  # hung sends answer, so the worker can stop at once
    process.stop()


def hung(fake: FakeProviders) -> int:
    return sum(1 for r in fake.requests if r.target == HUNG_TOPIC)


async def deliveries(pool: asyncpg.Pool, webhook_id: str) -> list[asyncpg.Record]:
    async with pool.acquire() as conn:
        return await conn.fetch(
            "SELECT d.id, d.status, d.attempts FROM deliveries d JOIN alerts a ON a.id = d.alert_id "
            "WHERE a.webhook_id = $1",
            uuid.UUID(webhook_id),
        )


async def fill_the_hung_channel(live: TestClient, account: Account, fake: FakeProviders) -> dict:
    """A push webhook whose every send hangs, HUNG_ALERTS alerts sent to it, its slots taken."""
    push = await create(
        live,
        account,
        {"name": "hung push", "notificationTypes": ["PUSH_NOTIF"], "targetChannels": {"push": HUNG_TOPIC}},
    )
    for n in range(HUNG_ALERTS):
        resp = await live.post(path_of(push), json={"title": f"hung {n}"})
        assert resp.status == 202, await resp.text()
    await wait_until(lambda: hung(fake) >= CHANNEL_SLOTS, "the hung topic to take its slots", timeout=30)
    return push


async def deliver_an_email_while_hung(
    live: TestClient, account: Account, fake: FakeProviders, smtp: SmtpServer, pool: asyncpg.Pool, push: dict
) -> None:
    body = {
        "name": "healthy",
        "notificationTypes": ["EMAIL"],
        "targetChannels": {"email": "oncall@example.com"},
    }
    email = await create(live, account, body)
    resp = await live.post(path_of(email), json={"title": "healthy email"})
    assert resp.status == 202
    await wait_until(lambda: smtp.messages, "the healthy email to be delivered", timeout=30)
    assert "healthy email" in smtp.messages[0]["Subject"]
    # ... while the hung sends still hang, and no more than the channel's slots reached the provider.
    assert hung(fake) == CHANNEL_SLOTS
    assert all(d["status"] == "pending" for d in await deliveries(pool, push["id"]))


async def all_final(pool: asyncpg.Pool, webhook_id: str) -> list[asyncpg.Record] | None:
    rows = await deliveries(pool, webhook_id)
    done = len(rows) == HUNG_ALERTS and all(d["status"] != "pending" for d in rows)
    return rows if done else None


@pytest.mark.slow
async def test_a_hung_provider_leaves_other_channels_free_and_waiters_keep_their_attempts(
    live: TestClient,
    account: Account,
    fake_providers: FakeProviders,
    smtp_server: SmtpServer,
    pool: asyncpg.Pool,
    redis: ArqRedis,
    worker: WorkerProcess,
) -> None:
    fake_providers.script(HUNG_TOPIC, *[Reply(hang=True)] * HUNG_ALERTS)
    push = await fill_the_hung_channel(live, account, fake_providers)
    await deliver_an_email_while_hung(live, account, fake_providers, smtp_server, pool, push)

    fake_providers.release()  # the provider answers: the hung sends succeed, the waiters go next
    rows = await wait_until(lambda: all_final(pool, push["id"]), "every push to be final", timeout=90)

    assert {(d["status"], d["attempts"]) for d in rows} == {("delivered", 1)}
    assert hung(fake_providers) == HUNG_ALERTS
    # Waiting was not an arq try either: each deliver job finished on its first counted try. (The
    # first sends, made in process_alert while the channel had slots, ran as no deliver job.)
    for d in rows:
        raw = await redis.get(result_key_prefix + str(d["id"]))
        if raw is not None:
            result = queue.deserialize(raw)
            assert (result["r"], result["t"]) == ("delivered", 1)
    resp = await live.get(f"/api/webhooks/{push['id']}", headers=account.headers)
    assert (await resp.json())["webhook"]["statistics"] == counts(HUNG_ALERTS, HUNG_ALERTS, 0)
    assert worker.alive()


@pytest.mark.slow
@pytest.mark.parametrize(
    "worker_env",
    [{"MONODUTY_PROVIDER_TIMEOUT": "1", "MONODUTY_JOB_TIMEOUT": "20", "MONODUTY_MAX_ATTEMPTS": "2"}],
)
async def test_hung_sends_that_time_out_fail_after_their_attempts_and_only_those(
    live: TestClient,
    account: Account,
    fake_providers: FakeProviders,
    smtp_server: SmtpServer,
    pool: asyncpg.Pool,
    worker: WorkerProcess,
) -> None:
    """The provider never answers: each delivery times out twice (MONODUTY_MAX_ATTEMPTS=2) and
    fails, however long it waited for a slot."""
    fake_providers.script(HUNG_TOPIC, *[Reply(hang=True)] * (2 * HUNG_ALERTS))
    push = await fill_the_hung_channel(live, account, fake_providers)

    rows = await wait_until(lambda: all_final(pool, push["id"]), "every push to be final", timeout=120)

    assert {(d["status"], d["attempts"]) for d in rows} == {("failed", 2)}
    assert hung(fake_providers) == 2 * HUNG_ALERTS
    resp = await live.get(f"/api/webhooks/{push['id']}", headers=account.headers)
    assert (await resp.json())["webhook"]["statistics"] == counts(HUNG_ALERTS, 0, HUNG_ALERTS)
