"""The System Status API as an operator and a status page read it: real Postgres, Redis and workers."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import asyncpg
import pytest
from aiohttp.test_utils import TestClient
from arq.connections import ArqRedis

from engine.observability import presence, response_times, uptime
from engine.settings import Settings, SettingsError
from tests.support.factories import Account, make_client
from tests.support.faults import RedisServer, TcpProxy
from tests.support.processes import wait_until
from tests.support.services import Services
from workers import health
from workers.worker import build_worker


@pytest.fixture
async def running_worker(settings: Settings, redis: ArqRedis) -> AsyncIterator[None]:
    """A real (non-burst) arq worker in this event loop, counted once it has said it is alive."""
    worker = build_worker(settings, handle_signals=False, cron_jobs=[])
    task = asyncio.create_task(worker.async_run())
    await wait_until(lambda: presence.count_alive(redis, presence.WORKERS), "the worker to say it is alive")
    yield
    await worker.close()
    await asyncio.gather(task, return_exceptions=True)


async def status_of(client: TestClient) -> dict:
    resp = await client.get("/api/status")
    assert resp.status == 200
    return await resp.json()


async def test_healthy_system_is_operational(
    client: TestClient, running_worker: None, services: Services
) -> None:
    body = await status_of(client)
    assert body["success"] is True
    assert body["status"] == "operational", body["issues"]
    assert body["issues"] == []
    parts = body["components"]
    assert parts["database"]["reachable"] is True and parts["database"]["round_trip_ms"] >= 0
    assert parts["redis"]["reachable"] is True and parts["redis"]["round_trip_ms"] >= 0
    assert parts["workers"] == {"status": "operational", "alive": 1}
    assert parts["queue"]["status"] == "operational"
    assert parts["queue"]["queued"] == 0 and parts["queue"]["retrying"] == 0
    # Public, and nothing about where the services live.
    text = await (await client.get("/api/status", headers={"Authorization": "Bearer wrong"})).text()
    where = urlsplit(services.database_url)
    hidden = [services.database_url, services.redis_url, "postgres", where.path]
    hidden += [where.netloc.split("@")[-1]] if where.hostname else [where.query]  # TCP or socket
    assert not [h for h in hidden if h and h in text]


async def test_no_worker_is_degraded_and_a_stale_queue_too(client: TestClient, redis: ArqRedis) -> None:
    body = await status_of(client)
    assert body["status"] == "degraded"
    assert body["components"]["workers"] == {"status": "down", "alive": 0}
    assert any("no worker" in issue for issue in body["issues"])

    # A job that has waited two minutes (no worker picks it up): the queue lags.
    await redis.enqueue_job("deliver", "d-1", None, _job_id="d-1")
    await redis.zadd("arq:queue", {"d-1": (time.time() - 120) * 1000})
    await redis.enqueue_job("deliver", "d-2", None, _job_id="d-2", _defer_by=600)
    queue = (await status_of(client))["components"]["queue"]
    assert queue["status"] == "degraded"
    assert queue["queued"] == 1 and queue["retrying"] == 1 and queue["in_progress"] == 0
    assert queue["oldest_queued_seconds"] >= 120


async def test_redis_down_is_down_and_named_and_the_routes_still_answer(
    settings: Settings, own_redis: RedisServer
) -> None:
    client = await make_client(settings.with_(redis_url=own_redis.url, status_timeout=0.5))
    try:
        assert (await status_of(client))["components"]["redis"]["reachable"] is True
        assert (await client.get("/readyz")).status == 200

        own_redis.stop()

        body = await asyncio.wait_for(status_of(client), 10)
        assert body["status"] == "down"
        parts = body["components"]
        assert parts["redis"] == {"status": "down", "reachable": False, "round_trip_ms": None}
        assert parts["database"]["reachable"] is True
        assert parts["workers"]["status"] == "unknown" and parts["queue"]["status"] == "unknown"
        assert any("redis" in issue for issue in body["issues"])

        resp = await asyncio.wait_for(client.get("/readyz"), 10)
        assert resp.status == 503
        error = await resp.json()
        assert error["success"] is False and error["code"] == "NOT_READY"
        assert "redis" in error["error"] and "database" not in error["error"]
        assert set(error) == {"success", "error", "code", "timestamp"}

        resp = await asyncio.wait_for(client.get("/api/response-time"), 10)
        assert resp.status == 503 and (await resp.json())["code"] == "SERVICE_UNAVAILABLE"
        resp = await asyncio.wait_for(client.get("/api/uptime"), 10)
        assert resp.status == 200  # from Postgres; started_at falls back to this process
    finally:
        await asyncio.wait_for(client.close(), 15)


async def test_readyz_when_all_is_well(client: TestClient) -> None:
    resp = await client.get("/readyz")
    assert resp.status == 200
    assert await resp.json() == {"success": True, "status": "ready"}


async def response_time(client: TestClient) -> dict:
    resp = await client.get("/api/response-time")
    assert resp.status == 200
    return await resp.json()


async def test_response_times_move_with_requests(client: TestClient, account: Account) -> None:
    before = await response_time(client)
    for _ in range(5):
        assert (await client.get("/api/webhooks", headers=account.headers)).status == 200
    assert (await client.get("/api/webhooks")).status == 401  # refused requests are timed too
    for _ in range(3):
        assert (await client.post("/" + "x" * 32, data="{}")).status == 404
    for _ in range(4):
        assert (await client.get("/healthz")).status == 200  # probes are not counted

    after = await response_time(client)
    # +6 /api/webhooks, +1 for the first /api/response-time itself (timed after it answered).
    assert after["groups"]["api"]["sample_count"] == before["groups"]["api"]["sample_count"] + 7
    assert after["groups"]["inbound"]["sample_count"] == before["groups"]["inbound"]["sample_count"] + 3
    assert after["sample_count"] == before["sample_count"] + 10
    assert after["window_seconds"] == response_times.WINDOW_SECONDS
    assert 0 < after["p50_ms"] <= after["p95_ms"] <= after["p99_ms"]
    assert after["current_ms"] > 0


async def test_percentiles_from_histograms_are_close_to_the_exact_ones(redis: ArqRedis) -> None:
    durations = [0.5 + (i * 7919 % 1000) * 0.37 for i in range(1000)]  # 0.5 .. 370 ms, shuffled
    recorder = response_times.Recorder()
    now = time.time()
    for i, ms in enumerate(durations):
        recorder.record("api" if i % 3 else "inbound", ms, now=now - (i % 200))
    await recorder.flush(redis)
    numbers = await response_times.read(redis, now=now)

    ordered = sorted(durations)
    assert numbers["sample_count"] == 1000
    for q, name in ((0.50, "p50_ms"), (0.95, "p95_ms"), (0.99, "p99_ms")):
        exact = ordered[math.ceil(q * len(ordered)) - 1]
        assert abs(numbers[name] - exact) <= 0.05 * exact, (name, numbers[name], exact)
    recent = [ms for i, ms in enumerate(durations) if i % 200 < 60]
    assert numbers["current_ms"] == pytest.approx(sum(recent) / len(recent), rel=0.01)


def seeded_samples(now: datetime) -> dict[datetime, str]:
    """Three days of minutes: mostly operational, some degraded, some missing (all down)."""
    current = now.replace(second=0, microsecond=0)
    samples = {}
    for i in range(3 * 24 * 60):
        moment = current - timedelta(minutes=i)
        if i % 29 == 7:
            continue  # nothing recorded that minute
        samples[moment] = "degraded" if i % 17 == 3 else "operational"
    samples.pop(current)  # the current minute is not sampled yet
    return samples


def expected_uptime(samples: dict[datetime, str], now: datetime, window: timedelta) -> float:
    """Independently: walk every minute of the window since the first sample."""
    current = now.replace(second=0, microsecond=0)
    first = min(samples)
    minutes, up = 0, 0
    moment = current - window + timedelta(minutes=1)
    while moment <= current:
        if moment >= first and (moment < current or moment in samples):
            minutes += 1
            up += samples.get(moment) == "operational"
        moment += timedelta(minutes=1)
    return round(100 * up / minutes, 3)


async def test_uptime_percentages_from_samples(client: TestClient, pool: asyncpg.Pool) -> None:
    for _ in range(3):  # seeded around "now": measure again if a minute turned meanwhile
        before = datetime.now(UTC)
        samples = seeded_samples(before)
        async with pool.acquire() as conn:
            await conn.execute("DELETE FROM health_samples")
            await conn.copy_records_to_table(
                "health_samples", records=list(samples.items()), columns=["sampled_at", "status"]
            )
        resp = await client.get("/api/uptime")
        if uptime.minute(datetime.now(UTC)) == uptime.minute(before):
            break
    assert resp.status == 200
    body = await resp.json()
    assert body["sample_interval_seconds"] == 60
    assert 0 <= body["uptime_seconds"] < 600
    started = datetime.fromisoformat(body["started_at"].replace("Z", "+00:00"))
    assert before - timedelta(minutes=10) < started <= datetime.now(UTC)
    for name, window in uptime.WINDOWS.items():
        assert body["uptime"][name]["percentage"] == expected_uptime(samples, before, window), name
    # 7 and 30 days start at the first sample (3 days ago), so they agree; 24 h differs.
    assert body["uptime"]["last_7d"] == body["uptime"]["last_30d"]
    assert body["uptime"]["last_24h"]["expected_samples"] == 24 * 60 - 1
    assert body["uptime"]["last_7d"]["expected_samples"] == 3 * 24 * 60 - 1
    assert body["uptime"]["last_24h"]["percentage"] != body["uptime"]["last_7d"]["percentage"]


async def test_no_samples_is_no_percentage(client: TestClient, pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        await conn.execute("DELETE FROM health_samples")
    body = await (await client.get("/api/uptime")).json()
    assert all(w["percentage"] is None for w in body["uptime"].values())


async def test_the_worker_cron_job_records_a_sample(
    settings: Settings, redis: ArqRedis, pool: asyncpg.Pool, running_worker: None
) -> None:
    assert health.RECORD_HEALTH_SAMPLE in {job.name for job in build_worker(settings).cron_jobs}
    async with pool.acquire() as conn:
        await conn.execute("DELETE FROM health_samples")
    ctx = {"settings": settings, "pool": pool, "redis": redis}
    before = datetime.now(UTC)
    assert await health.record_health_sample(ctx) == "operational"  # type: ignore[arg-type]
    assert await health.record_health_sample(ctx) == "operational"  # type: ignore[arg-type]
    minutes = {uptime.minute(before), uptime.minute(datetime.now(UTC))}
    async with pool.acquire() as conn:
        rows = await conn.fetch("SELECT sampled_at, status, details FROM health_samples")
    assert len(rows) == len(minutes)  # one sample per minute, however many workers run the job
    assert rows[0]["status"] == "operational" and rows[0]["details"] == {"issues": []}
    assert rows[0]["sampled_at"].second == 0


def test_status_settings_come_from_the_environment() -> None:
    settings = Settings.from_env({"MONODUTY_STATUS_TIMEOUT": "0.25", "MONODUTY_STATUS_MAX_QUEUE_AGE": "5"})
    assert (settings.status_timeout, settings.status_max_queue_age) == (0.25, 5.0)
    assert (Settings.from_env({}).status_timeout, Settings.from_env({}).status_max_queue_age) == (1.0, 60.0)
    with pytest.raises(SettingsError, match="MONODUTY_STATUS_TIMEOUT"):
        Settings.from_env({"MONODUTY_STATUS_TIMEOUT": "soon"})


async def test_database_down_is_degraded_and_alerts_are_still_accepted(
    settings: Settings, redis: ArqRedis, account: Account, services: Services
) -> None:
    proxy = TcpProxy.to_database(services.database_url)
    await proxy.start()
    via_proxy = proxy.url(services.database_url)
    client = await make_client(settings.with_(database_url=via_proxy, status_timeout=0.5))
    try:
        resp = await client.post(
            "/api/webhooks",
            json={
                "name": "Prod",
                "notificationTypes": ["EMAIL"],
                "targetChannels": {"email": "a@example.com"},
            },
            headers=account.headers,
        )
        hook = (await resp.json())["webhook"]["webhook_url"].removeprefix("http://monoduty.test")
        assert (await client.post(hook, json={"title": "first"})).status == 202

        await proxy.stop()

        body = await asyncio.wait_for(status_of(client), 10)
        assert body["status"] == "degraded"
        assert body["components"]["database"] == {"status": "down", "reachable": False, "round_trip_ms": None}
        assert body["components"]["redis"]["reachable"] is True
        assert any("database" in issue for issue in body["issues"])
        resp = await asyncio.wait_for(client.get("/readyz"), 10)
        assert resp.status == 503 and "database" in (await resp.json())["error"]
        # Why degraded and not down: a known webhook still takes alerts, which wait in the queue.
        resp = await asyncio.wait_for(client.post(hook, json={"title": "second"}), 10)
        assert resp.status == 202
        assert await redis.zcard(settings.queue_name) == 2
        resp = await asyncio.wait_for(client.get("/api/uptime"), 10)
        assert resp.status == 503 and (await resp.json())["code"] == "SERVICE_UNAVAILABLE"
    finally:
        await asyncio.wait_for(client.close(), 15)
