"""Jobs run again (a Redis fault cut off how their run ended): a re-run of process_alert while the
first run's delivery is being finished neither waits for it nor deadlocks with it, and a job that
PostgreSQL picks as a deadlock victim is tried again instead of failing for good (which would lose
its alert, or leave its delivery pending for ever)."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient
from arq import Retry

from engine.alerts import lifecycle
from engine.alerts.payloads import parse_alert
from engine.settings import Settings
from tests.support.factories import WEBHOOK, Account, create
from workers.outages import waits_for_storage


async def test_a_rerun_of_an_alert_does_not_wait_for_its_delivery_being_finished(
    client: TestClient, account: Account, pool: asyncpg.Pool
) -> None:
    webhook = await create(client, account, WEBHOOK)
    webhook_id = uuid.UUID(webhook["id"])
    parsed = parse_alert(json.dumps({"title": "DB down"}).encode(), "application/json")
    alert_id = uuid.uuid4()
    async with pool.acquire() as conn:
        received_at = await conn.fetchval("SELECT now()")
        first = await lifecycle.record_alert(conn, alert_id, webhook_id, parsed, received_at=received_at)
    assert first is not None and len(first) == 4

    # Its last delivery being finished: the alert row updated, the webhook's counters next.
    async with pool.acquire() as finishing:
        transaction = finishing.transaction()
        await transaction.start()
        try:
            await finishing.execute("UPDATE alerts SET finished_at = now() WHERE id = $1", alert_id)
            async with pool.acquire() as conn:
                rerun = await asyncio.wait_for(
                    lifecycle.record_alert(conn, alert_id, webhook_id, parsed, received_at=received_at),
                    timeout=10,
                )
            # ... which it now reaches without waiting for the re-run (that held the webhook's lock).
            await asyncio.wait_for(
                finishing.execute(
                    "UPDATE webhooks SET pending_calls = pending_calls WHERE id = $1", webhook_id
                ),
                timeout=10,
            )
        finally:
            await transaction.rollback()
    assert rerun is not None and sorted(rerun) == sorted(first)
    async with pool.acquire() as conn:
        stored = await conn.fetchrow(
            "SELECT total_calls, (SELECT count(*) FROM deliveries d JOIN alerts a ON a.id = d.alert_id"
            " WHERE a.webhook_id = w.id) AS deliveries FROM webhooks w WHERE id = $1",
            webhook_id,
        )
    assert stored is not None and (stored["total_calls"], stored["deliveries"]) == (1, 4)  # counted once


@pytest.mark.parametrize(
    "error", [asyncpg.exceptions.DeadlockDetectedError, asyncpg.exceptions.SerializationError]
)
async def test_a_job_picked_as_a_deadlock_victim_is_tried_again(
    settings: Settings, error: type[Exception]
) -> None:
    @waits_for_storage
    async def job(ctx: dict[str, Any]) -> None:
        raise error("deadlock detected")

    with pytest.raises(Retry):
        await job({"settings": settings, "job_try": 1, "job_id": "j"})


async def test_a_job_cancelled_again_while_it_unwinds_from_its_deadline_is_tried_again(
    settings: Settings,
) -> None:
    """arq's timeout lands while the job is still unwinding from its own deadline (a connection
    released slowly on a stalled loop): the job is deferred, not failed for good with its
    delivery left pending forever (found by the worker SIGKILL storm, tests/faults/)."""

    @waits_for_storage
    async def job(ctx: dict[str, Any]) -> None:
        try:
            await asyncio.sleep(10)
        finally:
            await asyncio.sleep(1)  # cleanup after our deadline's cancel, cut by arq's

    ctx = {"settings": settings.with_(job_timeout=2), "job_try": 1, "job_id": "j"}
    # Our deadline is 1 s, arq's timeout 2 s: arq's wait_for, as it runs a job.
    with pytest.raises(Retry):
        await asyncio.wait_for(job(ctx), timeout=1.5)


async def test_a_job_cancelled_before_its_deadline_stays_cancelled(settings: Settings) -> None:
    @waits_for_storage
    async def job(ctx: dict[str, Any]) -> None:
        await asyncio.sleep(10)

    task = asyncio.create_task(job({"settings": settings.with_(job_timeout=20), "job_try": 1, "job_id": "j"}))
    await asyncio.sleep(0.05)
    task.cancel()  # a worker shutting down: the cancel is not turned into a Retry
    with pytest.raises(asyncio.CancelledError):
        await task
