"""The first attempt of each delivery is made inside process_alert (one queue hop less); retries,
deliveries whose channel has no free send slot, and every delivery of a re-run go through the
queue as deliver jobs, queued together in one round trip (engine.queue.enqueue_deliveries)."""

from __future__ import annotations

import json
import uuid

import asyncpg
from aiohttp.test_utils import TestClient
from arq.connections import ArqRedis
from arq.constants import default_queue_name, result_key_prefix
from arq.jobs import Job, JobStatus

from engine import queue
from engine.alerts import lifecycle
from engine.alerts.payloads import parse_alert
from engine.settings import Settings
from tests.support.factories import (
    ALERT,
    Account,
    counts,
    deliveries,
    run_worker,
    send_alert,
    statistics,
)
from tests.support.providers import FakeProviders, Reply, SmtpServer


async def deliver_jobs_run(redis: ArqRedis, rows: dict[str, asyncpg.Record]) -> set[str]:
    """The channels whose delivery ran as a deliver job (arq keeps each job's result, by its id)."""
    return {c for c, r in rows.items() if await redis.exists(result_key_prefix + str(r["id"]))}


async def test_the_first_attempts_are_made_in_process_alert(
    live: TestClient,
    account: Account,
    pool: asyncpg.Pool,
    redis: ArqRedis,
    provider_settings: Settings,
    fake_providers: FakeProviders,
    smtp_server: SmtpServer,
) -> None:
    webhook, alert_id = await send_alert(live, account)
    await run_worker(provider_settings)

    rows = await deliveries(pool, alert_id)
    assert {c: (r["status"], r["attempts"]) for c, r in rows.items()} == {
        c: ("delivered", 1) for c in ("EMAIL", "SMS", "PUSH_NOTIF", "CALL")
    }
    assert await deliver_jobs_run(redis, rows) == set()  # no deliver job: sent by process_alert
    assert len(fake_providers.requests) == 3 and len(smtp_server.messages) == 1
    assert await statistics(live, account, webhook) == counts(1, 1, 0)


async def test_a_transient_failure_of_the_first_attempt_is_retried_through_the_queue(
    live: TestClient,
    account: Account,
    pool: asyncpg.Pool,
    redis: ArqRedis,
    provider_settings: Settings,
    fake_providers: FakeProviders,
) -> None:
    fake_providers.script("+14155550123", Reply(500))
    webhook, alert_id = await send_alert(live, account)
    await run_worker(provider_settings)

    rows = await deliveries(pool, alert_id)
    assert (rows["SMS"]["status"], rows["SMS"]["attempts"]) == ("delivered", 2)
    assert await deliver_jobs_run(redis, rows) == {"SMS"}  # only the retry was a deliver job
    assert [r.target for r in fake_providers.requests if r.kind == "sms"] == ["+14155550123"] * 2
    assert await statistics(live, account, webhook) == counts(1, 1, 0)


async def test_a_rerun_after_the_worker_died_queues_what_is_pending(
    live: TestClient,
    account: Account,
    pool: asyncpg.Pool,
    redis: ArqRedis,
    provider_settings: Settings,
    fake_providers: FakeProviders,
    smtp_server: SmtpServer,
) -> None:
    """The first run stored the alert and died before its sends: arq runs process_alert again, and
    the re-run queues the deliveries (a deliver job each) rather than sending them itself."""
    resp = await live.post(
        "/api/webhooks",
        json={"name": "Rerun", "notificationTypes": ["SMS"], "targetChannels": {"sms": "+14155550123"}},
        headers=account.headers,
    )
    webhook = (await resp.json())["webhook"]
    alert_id = uuid.uuid4()
    body = json.dumps(ALERT)
    async with pool.acquire() as conn:
        received_at = await conn.fetchval("SELECT now()")
        stored = await lifecycle.record_alert(
            conn,
            alert_id,
            uuid.UUID(webhook["id"]),
            parse_alert(body.encode(), "application/json"),
            received_at=received_at,
        )
    assert stored is not None and len(stored) == 1
    await queue.enqueue_alert(
        redis,
        str(alert_id),
        webhook["id"],
        body=body,
        content_type="application/json",
        received_at=received_at,
    )
    await run_worker(provider_settings)

    rows = await deliveries(pool, str(alert_id))
    assert (rows["SMS"]["status"], rows["SMS"]["attempts"]) == ("delivered", 1)
    assert await deliver_jobs_run(redis, rows) == {"SMS"}
    assert len(fake_providers.requests) == 1
    assert await statistics(live, account, webhook) == counts(1, 1, 0)


async def test_deliveries_are_queued_together_as_arq_queues_them(redis: ArqRedis) -> None:
    ids = [str(uuid.uuid4()) for _ in range(3)]
    assert await queue.enqueue_deliveries(redis, ids, request_id="req-1") == 3
    assert await queue.enqueue_deliveries(redis, ids) == 0  # queued already: not again
    for delivery_id in ids:
        job = Job(delivery_id, redis, _deserializer=queue.deserialize)
        assert await job.status() == JobStatus.queued
        info = await job.info()
        assert info is not None and info.function == queue.DELIVER
        assert list(info.args) == [delivery_id, "req-1"] and info.kwargs == {}
        assert info.job_try is None  # as arq's enqueue_job writes it: the first try
    later = str(uuid.uuid4())
    assert await queue.enqueue_deliveries(redis, [later], defer=60) == 1
    score = await redis.zscore(default_queue_name, later)
    first = await redis.zscore(default_queue_name, ids[0])
    assert score is not None and first is not None and 59_000 <= score - first <= 61_000
    assert await Job(later, redis, _deserializer=queue.deserialize).status() == JobStatus.deferred
