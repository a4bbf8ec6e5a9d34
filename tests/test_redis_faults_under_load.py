"""Redis faults while workers are busy: a Redis server the test owns, real worker processes, real alerts.

- Connections reset every 250 ms (``CLIENT KILL TYPE normal``): the workers stay up and every alert
  answered 202 is delivered; the API answers 202 or 503, never 500.
- Redis killed (SIGKILL) and restarted under load: the same.
- Redis frozen (SIGSTOP): inbound answers 503 + Retry-After within seconds instead of hanging,
  ``worker --check`` answers instead of hanging, and the workers carry on once it thaws.
- Twenty outages in a row: the worker still runs ``max_jobs`` jobs at once afterwards (no
  concurrency slot is lost to an outage).
In every case no worker log holds "Task exception was never retrieved".
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient
from arq.constants import in_progress_key_prefix

from engine import queue
from tests.support.factories import Account, make_client
from tests.support.faults import RedisServer, WorkerProcess
from tests.support.outages import (
    NEVER_RETRIEVED,
    TOPIC,
    Sender,
    delivered,
    kill_clients,
    new_webhook,
    settings_for,
)
from tests.support.processes import monoduty, monoduty_env, wait_until
from tests.support.providers import FakeProviders, Reply
from tests.support.services import Services


class Stack:
    """The API (in this process) and real ``monoduty worker`` processes on a Redis the test owns."""

    def __init__(self, client: TestClient, workers: list[WorkerProcess], path: str) -> None:
        self.client = client
        self.workers = workers
        self.path = path
        self.senders: list[Sender] = []

    def sender(self, **options: Any) -> Sender:
        """A Sender to this stack's webhook, started."""
        sender = Sender(self.client, self.path, **options)
        self.senders.append(sender)
        sender.start()
        return sender

    def stop(self) -> list[int]:
        """SIGTERM every worker; their exit codes (0: a clean shutdown)."""
        return [w.stop() for w in self.workers]

    def dead(self) -> list[str]:
        return [w.output()[-3000:] for w in self.workers if not w.alive()]

    def assert_healthy_logs(self) -> None:
        for worker in self.workers:
            assert NEVER_RETRIEVED not in worker.output(), worker.output()[-5000:]

    def assert_clean_stop(self) -> None:
        """No worker logged an unretrieved task exception, and every one stops cleanly (exit 0)."""
        self.assert_healthy_logs()
        assert self.stop() == [0] * len(self.workers)


@contextlib.asynccontextmanager
async def stack(
    services: Services,
    account: Account,
    fake: FakeProviders,
    server: RedisServer,
    tmp_path: Path,
    *,
    workers: int = 2,
    **env: str,
) -> AsyncIterator[Stack]:
    client = await make_client(settings_for(services, server, fake))
    procs: list[WorkerProcess] = []
    try:
        path = await new_webhook(client, account)
        for n in range(workers):
            procs.append(
                WorkerProcess(
                    tmp_path / f"worker-{n}.log",
                    MONODUTY_DATABASE_URL=services.database_url,
                    MONODUTY_REDIS_URL=server.url,
                    MONODUTY_NTFY_URL=fake.url,
                    **env,
                )
            )
        for proc in procs:
            await wait_until(lambda p=proc: "Starting worker" in p.output(), "a worker to start", timeout=30)
        running = Stack(client, procs, path)
        try:
            yield running
        finally:
            for sender in running.senders:
                await sender.cancel()
    finally:
        for proc in procs:
            if proc.alive():
                proc.stop()
        await client.close()


async def hold_elsewhere(server: RedisServer, count: int) -> None:
    """Queue ``count`` jobs that another worker is running (their in-progress claims, for a while).

    Every poll of a worker re-checks such jobs in arq's claim step, so the worker is inside that
    step nearly all the time: where an outage used to cost it a job slot for good.
    """
    redis = await queue.connect(server.url)
    try:
        for _ in range(count):
            job_id = str(uuid.uuid4())
            await queue.enqueue_delivery(redis, job_id)
            await redis.psetex(in_progress_key_prefix + job_id, 600_000, b"1")
    finally:
        await redis.aclose()


async def all_delivered(pool: asyncpg.Pool, stack: Stack, accepted: list[str], timeout: float) -> None:
    async def done() -> bool:
        assert not stack.dead(), stack.dead()
        return await delivered(pool, accepted) == len(accepted)

    await wait_until(done, f"all {len(accepted)} accepted alerts to be delivered", timeout=timeout)


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_workers_survive_connection_resets_under_load(
    services: Services,
    pool: asyncpg.Pool,
    account: Account,
    fake_providers: FakeProviders,
    own_redis: RedisServer,
    tmp_path: Path,
) -> None:
    async with stack(services, account, fake_providers, own_redis, tmp_path) as running:
        sender = running.sender()
        await wait_until(lambda: len(sender.accepted) >= 20, "alerts to flow", timeout=20)
        killed = 0
        for _ in range(24):  # 6 s of resets, one every 250 ms
            killed += await asyncio.to_thread(kill_clients, own_redis)
            await asyncio.sleep(0.25)  # the fault's own rhythm, not a wait for something
            assert not running.dead(), running.dead()
        await sender.stop()
        assert killed > 24  # the workers' and the API's connections were really reset

        await all_delivered(pool, running, sender.accepted, timeout=60)
        assert not running.dead(), running.dead()
        assert set(sender.statuses) <= {202, 503}, sender.statuses
        running.assert_clean_stop()


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_workers_survive_a_redis_crash_under_load(
    services: Services,
    pool: asyncpg.Pool,
    account: Account,
    fake_providers: FakeProviders,
    own_redis: RedisServer,
    tmp_path: Path,
) -> None:
    async with stack(services, account, fake_providers, own_redis, tmp_path) as running:
        sender = running.sender()
        for _ in range(3):
            before = len(sender.accepted)
            await wait_until(lambda b=before: len(sender.accepted) >= b + 30, "alerts to flow", timeout=30)
            own_redis.kill()
            refused = sender.statuses[503]
            await wait_until(lambda r=refused: sender.statuses[503] > r, "the API to say 503", timeout=10)
            own_redis.start()
        before = len(sender.accepted)
        await wait_until(lambda: len(sender.accepted) >= before + 30, "alerts to flow again", timeout=30)
        await sender.stop()

        await all_delivered(pool, running, sender.accepted, timeout=90)
        assert set(sender.statuses) <= {202, 503}, sender.statuses
        running.assert_clean_stop()


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_a_frozen_redis_gets_503_in_seconds_not_a_hang(
    services: Services,
    pool: asyncpg.Pool,
    account: Account,
    fake_providers: FakeProviders,
    own_redis: RedisServer,
    tmp_path: Path,
) -> None:
    assert own_redis.proc is not None
    async with stack(services, account, fake_providers, own_redis, tmp_path) as running:
        sender = running.sender()
        await wait_until(lambda: len(sender.accepted) >= 30, "alerts to flow", timeout=20)

        os.kill(own_redis.proc.pid, signal.SIGSTOP)
        try:
            frozen_at = time.monotonic()
            # A sender posting now is told to come back later within a few seconds; with no bound on
            # Redis calls it waited for as long as Redis stayed frozen (its own timeout: 10 s here).
            probe = await asyncio.wait_for(
                running.client.post(running.path, json={"title": "while frozen"}), timeout=8
            )
            assert probe.status == 503, await probe.text()
            assert int(probe.headers["Retry-After"]) >= 1
            # A supervisor's health check answers too (unhealthy: it cannot tell), rather than hanging.
            env = monoduty_env(MONODUTY_DATABASE_URL=services.database_url, MONODUTY_REDIS_URL=own_redis.url)
            check = await asyncio.to_thread(monoduty, "worker", "--check", env=env, check=False, timeout=15)
            assert check.returncode == 1
            # Keep it frozen for 10 s in all, with the senders pressing on.
            await wait_until(lambda: time.monotonic() - frozen_at >= 10, "the freeze to last", timeout=15)
        finally:
            os.kill(own_redis.proc.pid, signal.SIGCONT)

        before = len(sender.accepted)
        await wait_until(lambda: len(sender.accepted) >= before + 30, "alerts accepted again", timeout=30)
        await sender.stop()
        assert sender.statuses["timeout"] == 0, sender.statuses
        assert set(sender.statuses) <= {202, 503}, sender.statuses

        await all_delivered(pool, running, sender.accepted, timeout=90)
        env = monoduty_env(MONODUTY_DATABASE_URL=services.database_url, MONODUTY_REDIS_URL=own_redis.url)

        async def healthy() -> bool:
            result = await asyncio.to_thread(monoduty, "worker", "--check", env=env, check=False)
            return result.returncode == 0

        await wait_until(healthy, "worker --check to pass again", timeout=20)
        running.assert_clean_stop()


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_a_worker_keeps_its_capacity_through_twenty_outages(
    services: Services,
    pool: asyncpg.Pool,
    account: Account,
    fake_providers: FakeProviders,
    own_redis: RedisServer,
    tmp_path: Path,
) -> None:
    """Each outage that hit arq's claim of a job cost the worker one of its job slots, for good."""
    capacity = 4
    async with stack(
        services,
        account,
        fake_providers,
        own_redis,
        tmp_path,
        workers=1,
        MONODUTY_WORKER_CONCURRENCY=str(capacity),
        MONODUTY_PROVIDER_TIMEOUT="60",  # the held sends must not time out and be retried meanwhile
    ) as running:
        await hold_elsewhere(own_redis, 50)
        sender = running.sender()
        for outage in range(20):
            before = len(sender.accepted)
            await wait_until(lambda b=before: len(sender.accepted) >= b + 10, "alerts to flow", timeout=30)
            if outage % 2:
                own_redis.kill()
                own_redis.start()
            else:
                await asyncio.to_thread(kill_clients, own_redis)
        await sender.stop()
        await all_delivered(pool, running, sender.accepted, timeout=120)

        # Now every send hangs at the provider: a worker with all its slots holds `capacity` at once.
        fake_providers.script(TOPIC, *[Reply(hang=True)] * (2 * capacity))
        slow = running.sender(senders=1, interval=0.01)
        await wait_until(lambda: len(slow.accepted) >= 2 * capacity, "the slow alerts to be accepted")
        await slow.stop()
        await wait_until(
            lambda: fake_providers.in_flight == capacity,
            f"{capacity} sends in flight at once (the worker's capacity)",
            timeout=20,
        )
        fake_providers.release()
        await all_delivered(pool, running, slow.accepted, timeout=60)
        running.assert_clean_stop()
