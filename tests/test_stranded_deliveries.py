"""A stored delivery whose deliver job Redis lost (FLUSHALL, the AOF everysec window, a failover) is
queued again by the workers' sweep (workers.stranded) and reaches its provider once; a delivery
whose job still exists, or that is being sent, gets no second send from it."""

from __future__ import annotations

import asyncio
import json
import uuid

import asyncpg
from aiohttp.test_utils import TestClient
from arq.connections import ArqRedis
from arq.constants import default_queue_name, in_progress_key_prefix, job_key_prefix, result_key_prefix

from engine import queue
from engine.alerts import lifecycle
from engine.alerts.payloads import parse_alert
from engine.clock import SYSTEM, Clock
from engine.settings import Settings
from tests.support.clock import ShiftedClock
from tests.support.factories import ALERT, Account, run_worker
from tests.support.providers import FakeProviders
from workers.stranded import idle_seconds, requeue_stranded


async def stored_delivery(client: TestClient, account: Account, pool: asyncpg.Pool) -> tuple[str, str]:
    """A push webhook of its own topic and one alert stored to it, as process_alert stores it, its
    delivery pending and attempted by no job: (delivery id, topic)."""
    topic = f"stranded-{uuid.uuid4().hex[:8]}"
    resp = await client.post(
        "/api/webhooks",
        json={"name": "stranded", "notificationTypes": ["PUSH_NOTIF"], "targetChannels": {"push": topic}},
        headers=account.headers,
    )
    assert resp.status == 201, await resp.text()
    webhook = (await resp.json())["webhook"]
    async with pool.acquire() as conn:
        ids = await lifecycle.record_alert(
            conn,
            uuid.uuid4(),
            uuid.UUID(webhook["id"]),
            parse_alert(json.dumps(ALERT).encode(), "application/json"),
            received_at=await conn.fetchval("SELECT now()"),
        )
    assert ids is not None and len(ids) == 1
    return str(ids[0]), topic


async def sweep(settings: Settings, pool: asyncpg.Pool, redis: ArqRedis, clock: Clock) -> None:
    """One tick of the workers' cron job, on ``clock``."""
    ctx = {"settings": settings, "pool": pool, "redis": redis, "clock": clock}
    await requeue_stranded(ctx)  # type: ignore[arg-type]


async def idle_for(pool: asyncpg.Pool, delivery_id: str, seconds: float) -> None:
    """Move the delivery's times back ``seconds``, as if it had waited that long since."""
    async with pool.acquire() as conn:
        await conn.execute(
            "UPDATE deliveries SET created_at = created_at - make_interval(secs => $2), "
            "last_attempt_at = last_attempt_at - make_interval(secs => $2), "
            "next_attempt_at = next_attempt_at - make_interval(secs => $2), "
            "sending_since = sending_since - make_interval(secs => $2) WHERE id = $1",
            uuid.UUID(delivery_id),
            float(seconds),
        )


async def stranded_by_now(pool: asyncpg.Pool, settings: Settings, delivery_id: str) -> None:
    """Past the moment the delivery, idle since now, counts as stranded."""
    await idle_for(pool, delivery_id, idle_seconds(settings.job_timeout) + 1)


def sends(fake: FakeProviders, topic: str) -> int:
    return sum(1 for r in fake.requests if r.target == topic)


async def delivery(pool: asyncpg.Pool, delivery_id: str) -> asyncpg.Record:
    async with pool.acquire() as conn:
        row = await conn.fetchrow("SELECT * FROM deliveries WHERE id = $1", uuid.UUID(delivery_id))
    assert row is not None
    return row


async def test_a_delivery_whose_job_was_flushed_is_sent_once_after_the_sweep(
    live: TestClient,
    account: Account,
    pool: asyncpg.Pool,
    redis: ArqRedis,
    provider_settings: Settings,
    fake_providers: FakeProviders,
) -> None:
    delivery_id, topic = await stored_delivery(live, account, pool)
    assert await queue.enqueue_deliveries(redis, [delivery_id]) == 1
    await redis.flushdb()  # the job is gone; PostgreSQL still says pending

    await sweep(provider_settings, pool, redis, SYSTEM)  # not idle long enough yet
    assert not await redis.exists(job_key_prefix + delivery_id)
    await stranded_by_now(pool, provider_settings, delivery_id)
    await sweep(provider_settings, pool, redis, SYSTEM)
    await run_worker(provider_settings)
    assert (await delivery(pool, delivery_id))["status"] == "delivered"
    assert sends(fake_providers, topic) == 1

    await stranded_by_now(pool, provider_settings, delivery_id)
    await sweep(provider_settings, pool, redis, SYSTEM)  # delivered: nothing owed
    await run_worker(provider_settings)
    assert sends(fake_providers, topic) == 1


async def test_a_retry_whose_job_a_flush_took_mid_run_is_sent_again(
    live: TestClient,
    account: Account,
    pool: asyncpg.Pool,
    redis: ArqRedis,
    provider_settings: Settings,
    fake_providers: FakeProviders,
) -> None:
    """A job running when Redis was flushed that then retries puts its id back in the queue without
    its job (arq's ZINCRBY); the next worker finds it "expired" and keeps that result for an hour,
    which an ordinary enqueue of that id takes for a job done."""
    delivery_id, topic = await stored_delivery(live, account, pool)
    await redis.zadd(default_queue_name, {delivery_id: 1})
    await run_worker(provider_settings)
    assert await redis.exists(result_key_prefix + delivery_id)  # arq's "job expired"
    assert (await delivery(pool, delivery_id))["status"] == "pending"

    await stranded_by_now(pool, provider_settings, delivery_id)
    await sweep(provider_settings, pool, redis, SYSTEM)
    await run_worker(provider_settings)
    assert (await delivery(pool, delivery_id))["status"] == "delivered"
    assert sends(fake_providers, topic) == 1


async def test_a_delivery_whose_job_is_still_queued_or_running_is_not_queued_twice(
    live: TestClient,
    account: Account,
    pool: asyncpg.Pool,
    redis: ArqRedis,
    provider_settings: Settings,
    fake_providers: FakeProviders,
) -> None:
    delivery_id, topic = await stored_delivery(live, account, pool)
    assert await queue.enqueue_deliveries(redis, [delivery_id], defer=30) == 1  # e.g. waiting for a slot
    job = await redis.get(job_key_prefix + delivery_id)
    score = await redis.zscore(default_queue_name, delivery_id)

    await stranded_by_now(pool, provider_settings, delivery_id)
    await sweep(provider_settings, pool, redis, SYSTEM)
    assert await redis.get(job_key_prefix + delivery_id) == job
    assert await redis.zscore(default_queue_name, delivery_id) == score  # not moved to now

    # The same while a worker runs it (its claim held, its job key gone with a flush).
    await redis.delete(job_key_prefix + delivery_id)
    await redis.set(in_progress_key_prefix + delivery_id, b"1")
    await stranded_by_now(pool, provider_settings, delivery_id)
    await sweep(provider_settings, pool, redis, SYSTEM)
    assert not await redis.exists(job_key_prefix + delivery_id)
    assert await redis.zscore(default_queue_name, delivery_id) == score

    await redis.delete(in_progress_key_prefix + delivery_id)
    await redis.zadd(default_queue_name, {delivery_id: 1})  # due now (arq takes a score of 0 for none)
    await redis.set(job_key_prefix + delivery_id, job)
    await run_worker(provider_settings)
    assert sends(fake_providers, topic) == 1


async def test_a_delivery_being_sent_is_left_to_its_attempt_then_to_the_possibly_duplicated_path(
    live: TestClient,
    account: Account,
    pool: asyncpg.Pool,
    redis: ArqRedis,
    provider_settings: Settings,
    fake_providers: FakeProviders,
) -> None:
    """An attempt under way with no job in Redis (the first attempt inside process_alert, or a
    deliver job flushed mid-send) is not doubled by the sweep while it can still be running, even
    on a clock running ahead; once it cannot (its worker died), the delivery goes again, recorded
    possibly duplicated."""
    delivery_id, topic = await stored_delivery(live, account, pool)
    async with pool.acquire() as conn:
        # Made long ago: only its attempt, just begun, says it is being worked on.
        await conn.execute(
            "UPDATE deliveries SET created_at = now() - interval '1 hour' WHERE id = $1",
            uuid.UUID(delivery_id),
        )
        assert await lifecycle.start_attempt(conn, uuid.UUID(delivery_id)) is not None

    await sweep(provider_settings, pool, redis, SYSTEM)
    # A sweeper whose clock is 10 minutes ahead (stepped since it last measured the database's)
    # does not take the attempt for one long dead.
    await sweep(provider_settings, pool, redis, ShiftedClock(600))
    await run_worker(provider_settings)
    assert sends(fake_providers, topic) == 0
    assert (await delivery(pool, delivery_id))["sending_since"] is not None

    await stranded_by_now(pool, provider_settings, delivery_id)  # its worker died mid-send
    await sweep(provider_settings, pool, redis, SYSTEM)
    await run_worker(provider_settings)
    row = await delivery(pool, delivery_id)
    assert (row["status"], row["attempts"], row["possibly_duplicated"]) == ("delivered", 2, True)
    assert sends(fake_providers, topic) == 1


async def test_workers_sweeping_at_once_queue_a_stranded_delivery_once(
    live: TestClient,
    account: Account,
    pool: asyncpg.Pool,
    redis: ArqRedis,
    provider_settings: Settings,
    fake_providers: FakeProviders,
) -> None:
    delivery_id, topic = await stored_delivery(live, account, pool)
    await stranded_by_now(pool, provider_settings, delivery_id)
    await asyncio.gather(*(sweep(provider_settings, pool, redis, SYSTEM) for _ in range(3)))
    await run_worker(provider_settings)
    await stranded_by_now(pool, provider_settings, delivery_id)
    await sweep(provider_settings, pool, redis, SYSTEM)  # delivered: nothing owed any more
    await run_worker(provider_settings)
    assert (await delivery(pool, delivery_id))["status"] == "delivered"
    assert sends(fake_providers, topic) == 1


async def test_a_delivery_stranded_longer_than_arq_keeps_a_job_is_not_sent_days_late(
    live: TestClient,
    account: Account,
    pool: asyncpg.Pool,
    redis: ArqRedis,
    provider_settings: Settings,
    fake_providers: FakeProviders,
) -> None:
    """One stranded before the sweep existed (an upgrade): a page two days late is noise, and no
    job of it would have run that late either (arq expires a job after a day)."""
    delivery_id, topic = await stored_delivery(live, account, pool)
    await idle_for(pool, delivery_id, 2 * 24 * 3600)
    await sweep(provider_settings, pool, redis, SYSTEM)
    await run_worker(provider_settings)
    assert not await redis.exists(result_key_prefix + delivery_id)  # no deliver job ran
    assert sends(fake_providers, topic) == 0
