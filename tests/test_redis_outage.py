"""Redis going away under a running system: a Redis server the test owns, real worker processes.

- Redis stopped and started again while a worker runs: the same worker process carries on.
- Redis killed (SIGKILL) with AOF on: every alert answered 202 before is still there and delivered.
- Redis away or frozen: inbound answers 503 + Retry-After (within seconds), never 500 or a hang.
  (tests/test_redis_faults_under_load.py does the same with workers busy.)
"""

from __future__ import annotations

import asyncio
import os
import signal
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
from aiohttp.test_utils import TestClient
from arq.connections import ArqRedis

from engine import metrics, queue, registry
from engine.settings import NtfySettings, Settings
from tests.support.factories import Account, assert_error, create, make_client, path_of, run_worker
from tests.support.faults import RedisServer, WorkerProcess
from tests.support.processes import monoduty, monoduty_env, wait_until
from tests.support.providers import FakeProviders
from tests.support.services import Services

TOPIC = "outage-topic"


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis", aof=True)
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def own_redis_client(own_redis: RedisServer) -> AsyncIterator[ArqRedis]:
    client = await queue.connect(own_redis.url)
    yield client
    await client.aclose()


def app_settings(services: Services, redis_url: str, fake: FakeProviders) -> Settings:
    return Settings(
        database_url=services.database_url,
        redis_url=redis_url,
        public_url="http://monoduty.test",
        require_https=False,
        ntfy=NtfySettings(fake.url),
        worker_poll_delay=0.01,
    )


async def new_webhook(client: TestClient, account: Account) -> str:
    """A push webhook; its inbound path."""
    resp = await client.post(
        "/api/webhooks",
        json={"name": "outage", "notificationTypes": ["PUSH_NOTIF"], "targetChannels": {"push": TOPIC}},
        headers=account.headers,
    )
    assert resp.status == 201, await resp.text()
    return (await resp.json())["webhook"]["webhook_url"].removeprefix("http://monoduty.test")


async def send(client: TestClient, path: str, title: str) -> str:
    resp = await client.post(path, json={"title": title, "message": title})
    assert resp.status == 202, await resp.text()
    return (await resp.json())["alert_id"]


async def delivered(pool: asyncpg.Pool, alert_ids: list[str]) -> int:
    async with pool.acquire() as conn:
        return int(
            await conn.fetchval(
                "SELECT count(*) FROM deliveries WHERE alert_id = ANY($1::uuid[]) AND status = 'delivered'",
                [uuid.UUID(a) for a in alert_ids],
            )
        )


async def test_a_worker_rides_out_a_redis_restart(
    services: Services,
    pool: asyncpg.Pool,
    account: Account,
    fake_providers: FakeProviders,
    tmp_path: Path,
) -> None:
    server = RedisServer(tmp_path / "redis")  # no persistence: Redis comes back empty
    server.start()
    settings = app_settings(services, server.url, fake_providers)
    client = await make_client(settings)
    worker = WorkerProcess(
        tmp_path / "worker.log",
        MONODUTY_DATABASE_URL=services.database_url,
        MONODUTY_REDIS_URL=server.url,
        MONODUTY_NTFY_URL=fake_providers.url,
    )
    redis = await queue.connect(server.url)
    try:
        path = await new_webhook(client, account)

        async def counted() -> bool:
            return not worker.alive() or await registry.count_alive(redis, registry.WORKERS) == 1

        await wait_until(counted, "the worker to say it is alive", timeout=20)
        first = await send(client, path, "before")
        await wait_until(lambda: delivered(pool, [first]), "the first alert to be delivered", timeout=10)

        server.stop()

        async def noticed() -> bool:
            return "redis unreachable" in worker.output() or not worker.alive()

        await wait_until(noticed, "the worker to notice Redis is gone", timeout=10)
        server.start()

        # The same process, not a restarted one, takes the next alert.
        second = await send(client, path, "after")
        await wait_until(lambda: delivered(pool, [second]), "the alert sent after the restart", timeout=15)
        assert worker.alive(), worker.output()[-3000:]
        assert [r.body for r in fake_providers.requests] == ["before", "after"]

        # It says it is alive again (Redis came back empty) and its counters reach Redis again.
        await wait_until(counted, "the worker to be counted again", timeout=10)
        assert await redis.exists(settings.queue_name + ":health-check")
        env = monoduty_env(MONODUTY_DATABASE_URL=services.database_url, MONODUTY_REDIS_URL=server.url)
        check = await asyncio.to_thread(monoduty, "worker", "--check", env=env, check=False)
        assert check.returncode == 0, check.stderr

        async def flushed() -> bool:
            return any(b"delivered" in k for k in await redis.hkeys(metrics.METRICS_KEY))

        await wait_until(flushed, "the worker's counters to reach Redis again", timeout=10)
    finally:
        code = worker.stop()
        await redis.aclose()
        await client.close()
        server.stop()
    assert code == 0, worker.output()[-3000:]


async def test_alerts_accepted_before_a_redis_crash_are_delivered_after_it(
    services: Services,
    pool: asyncpg.Pool,
    account: Account,
    fake_providers: FakeProviders,
    own_redis: RedisServer,
) -> None:
    settings = app_settings(services, own_redis.url, fake_providers)
    client = await make_client(settings)
    try:
        path = await new_webhook(client, account)
        accepted = [await send(client, path, f"alert {n}") for n in range(10)]
    finally:
        await client.close()

    own_redis.kill()  # no shutdown save: only what the append-only file holds survives
    own_redis.start()

    await asyncio.wait_for(run_worker(settings), 30)
    assert await delivered(pool, accepted) == len(accepted)
    assert sorted(r.body for r in fake_providers.requests) == sorted(f"alert {n}" for n in range(10))


async def test_with_redis_away_inbound_says_503_and_retry_after(
    own_redis: RedisServer, settings: Settings, account: Account
) -> None:
    """A sender must be told to retry (503 + Retry-After), not be handed a 500 or a false 202."""
    client = await make_client(settings.with_(redis_url=own_redis.url))
    try:
        webhook = await create(client, account)
        own_redis.kill()
        resp = await client.post(path_of(webhook), json={"title": "while redis is away"})
        assert resp.status == 503
        assert int(resp.headers["Retry-After"]) >= 1
        assert_error(await resp.json(), "SERVICE_UNAVAILABLE")
        own_redis.start()
        resp = await client.post(path_of(webhook), json={"title": "redis is back"})
        assert resp.status == 202
    finally:
        await client.close()


async def test_with_redis_frozen_inbound_says_503_within_seconds(
    own_redis: RedisServer, settings: Settings, account: Account
) -> None:
    """A Redis that stops answering (SIGSTOP: a paused VM, a dropped route) must not hold senders."""
    assert own_redis.proc is not None
    client = await make_client(settings.with_(redis_url=own_redis.url))
    try:
        webhook = await create(client, account)
        os.kill(own_redis.proc.pid, signal.SIGSTOP)
        try:
            # Senders at once, as under load. Without a bound on Redis calls each waited for as long
            # as Redis stayed frozen; with redis-py's default pool, for every earlier one's timeout.
            async def post() -> tuple[int, str, dict[str, str]]:
                resp = await client.post(path_of(webhook), json={"title": "frozen"})
                return resp.status, resp.headers.get("Retry-After", ""), await resp.json()

            answers = await asyncio.wait_for(asyncio.gather(*[post() for _ in range(10)]), 6)
            for status, retry_after, body in answers:
                assert status == 503
                assert int(retry_after) >= 1
                assert_error(body, "SERVICE_UNAVAILABLE")
        finally:
            os.kill(own_redis.proc.pid, signal.SIGCONT)
        resp = await client.post(path_of(webhook), json={"title": "thawed"})
        assert resp.status == 202
    finally:
        await client.close()
