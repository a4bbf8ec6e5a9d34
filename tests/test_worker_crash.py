"""A worker killed (SIGKILL) mid-send: another worker re-runs the job, and it is counted once.

Real `monoduty worker` processes, the session's Redis and PostgreSQL, and a fake ntfy whose first
answer never comes, so the first worker is certainly in the middle of a send when it dies.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
from aiohttp.test_utils import TestClient
from arq.connections import ArqRedis

from engine.settings import NtfySettings, Settings
from tests.support.factories import Account, counts, make_client
from tests.support.faults import WorkerProcess
from tests.support.processes import ROOT, wait_until
from tests.support.providers import FakeProviders, Reply
from tests.support.services import Services
from workers.worker import build_worker

TOPIC = "crash-topic"
JOB_TIMEOUT = 2  # seconds: how long the dead worker's job stays "in progress" is this + a margin


@pytest.fixture
async def app(
    services: Services,
    redis: ArqRedis,
    fake_providers: FakeProviders,
) -> AsyncIterator[TestClient]:
    settings = Settings(
        database_url=services.database_url,
        redis_url=services.redis_url,
        public_url="http://monoduty.test",
        require_https=False,
        ntfy=NtfySettings(fake_providers.url),
    )
    client = await make_client(settings)
    yield client
    await client.close()


def start_worker(log: Path, services: Services, fake: FakeProviders, max_attempts: int) -> WorkerProcess:
    return WorkerProcess(
        log,
        MONODUTY_DATABASE_URL=services.database_url,
        MONODUTY_REDIS_URL=services.redis_url,
        MONODUTY_NTFY_URL=fake.url,
        MONODUTY_JOB_TIMEOUT=str(JOB_TIMEOUT),
        MONODUTY_MAX_ATTEMPTS=str(max_attempts),
        MONODUTY_RETRY_BASE_DELAY="0.01",
    )


async def delivery_of(pool: asyncpg.Pool, alert_id: str) -> asyncpg.Record | None:
    async with pool.acquire() as conn:
        return await conn.fetchrow(
            "SELECT status, attempts, last_error FROM deliveries WHERE alert_id = $1", uuid.UUID(alert_id)
        )


async def kill_mid_send_and_rerun(
    app: TestClient,
    account: Account,
    pool: asyncpg.Pool,
    fake: FakeProviders,
    services: Services,
    tmp_path: Path,
    max_attempts: int,
) -> tuple[asyncpg.Record, dict, float]:
    """Send one alert, kill the worker sending it, start another; the final delivery and statistics."""
    resp = await app.post(
        "/api/webhooks",
        json={"name": "crash", "notificationTypes": ["PUSH_NOTIF"], "targetChannels": {"push": TOPIC}},
        headers=account.headers,
    )
    assert resp.status == 201, await resp.text()
    webhook = (await resp.json())["webhook"]
    fake.script(TOPIC, Reply(hang=True))  # the first send never gets an answer
    resp = await app.post(webhook["webhook_url"].removeprefix("http://monoduty.test"), json={"title": "down"})
    assert resp.status == 202
    alert_id = (await resp.json())["alert_id"]

    first = start_worker(tmp_path / "first.log", services, fake, max_attempts)
    try:

        async def sending() -> bool:
            return bool(fake.requests) or not first.alive()

        await wait_until(sending, "the first worker to start sending", timeout=20)
        assert first.alive(), first.output()[-2000:]
        row = await delivery_of(pool, alert_id)
        assert row is not None and (row["status"], row["attempts"]) == ("pending", 1)
    finally:
        first.kill()
    killed_at = time.monotonic()

    second = start_worker(tmp_path / "second.log", services, fake, max_attempts)
    try:

        async def final() -> bool:
            row = await delivery_of(pool, alert_id)
            return (row is not None and row["status"] in ("delivered", "failed")) or not second.alive()

        # The dead worker's claim on the job lapses after the job timeout and a margin; then it re-runs.
        await wait_until(final, "another worker to re-run the job", timeout=3 * JOB_TIMEOUT + 10)
        rerun_after = time.monotonic() - killed_at
        assert second.alive(), second.output()[-2000:]
    finally:
        assert second.stop() == 0
    row = await delivery_of(pool, alert_id)
    assert row is not None
    resp = await app.get(f"/api/webhooks/{webhook['id']}", headers=account.headers)
    return row, (await resp.json())["webhook"]["statistics"], rerun_after


@pytest.mark.slow  # over 5 s: run with the slow tests
async def test_a_killed_workers_delivery_is_rerun_and_counted_once(
    app: TestClient,
    account: Account,
    pool: asyncpg.Pool,
    fake_providers: FakeProviders,
    services: Services,
    tmp_path: Path,
) -> None:
    row, statistics, rerun_after = await kill_mid_send_and_rerun(
        app, account, pool, fake_providers, services, tmp_path, max_attempts=3
    )
    assert row["status"] == "delivered"
    # The killed attempt counted (it was recorded before the send), the re-run is the second.
    assert row["attempts"] == 2
    # At least once: the provider saw the send that was cut off, and the re-run's.
    assert [r.target for r in fake_providers.requests] == [TOPIC, TOPIC]
    assert statistics == counts(1, 1, 0)
    print(f"re-run {rerun_after:.1f}s after the kill")


@pytest.mark.slow  # over 5 s: run with the slow tests
async def test_the_killed_attempt_counts_towards_the_cap(
    app: TestClient,
    account: Account,
    pool: asyncpg.Pool,
    fake_providers: FakeProviders,
    services: Services,
    tmp_path: Path,
) -> None:
    row, statistics, _ = await kill_mid_send_and_rerun(
        app, account, pool, fake_providers, services, tmp_path, max_attempts=1
    )
    # One attempt allowed, and the killed one was it: the re-run fails the delivery without sending.
    assert (row["status"], row["attempts"]) == ("failed", 2)
    assert "attempts exhausted" in row["last_error"]
    assert len(fake_providers.requests) == 1
    assert statistics == counts(1, 0, 1)


def test_a_dead_workers_job_reruns_within_what_the_readme_promises(settings: Settings) -> None:
    """The README's "`MONODUTY_JOB_TIMEOUT` + 5 s, N s by default": every job's claim, cron jobs
    included, lapses by then, with the default timeout and with another one."""
    readme = (ROOT / "README.md").read_text()
    promise = re.search(r"`MONODUTY_JOB_TIMEOUT` \+ (\d+) s, (\d+) s by default", readme)
    assert promise, "the README no longer states when a dead worker's job is re-run"
    margin, by_default = int(promise.group(1)), int(promise.group(2))
    for timeout in (Settings().job_timeout, 7):
        worker = build_worker(settings.with_(job_timeout=timeout))
        assert worker.in_progress_timeout_s == timeout + margin
        assert all((f.timeout_s or 0) <= timeout for f in worker.functions.values())
    default = build_worker(settings.with_(job_timeout=Settings().job_timeout))
    assert default.in_progress_timeout_s == by_default
