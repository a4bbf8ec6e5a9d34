"""An alert's last two deliveries finishing at once: exactly one of them finalises the alert and
counts its outcome (engine.alerts.lifecycle.finish_delivery), whichever order their statements
meet PostgreSQL in, and neither leaves the alert pending for ever."""

from __future__ import annotations

import asyncio
import json
import uuid

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from engine.alerts import lifecycle
from engine.alerts.lifecycle import DeliveryStatus
from engine.alerts.payloads import parse_alert
from tests.support.factories import WEBHOOK, Account, counts, create, statistics
from tests.support.processes import wait_until

WAITING = """
SELECT count(*) FROM pg_stat_activity
WHERE datname = current_database() AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()
"""


@pytest.mark.parametrize("last", [DeliveryStatus.DELIVERED, DeliveryStatus.CANCELLED])
async def test_two_last_deliveries_finishing_at_once_finalise_their_alert_once(
    client: TestClient, account: Account, pool: asyncpg.Pool, last: DeliveryStatus
) -> None:
    webhook = await create(client, account, WEBHOOK)
    parsed = parse_alert(json.dumps({"title": "DB down"}).encode(), "application/json")
    alert_id = uuid.uuid4()
    async with pool.acquire() as conn:
        received_at = await conn.fetchval("SELECT now()")
        ids = await lifecycle.record_alert(
            conn, alert_id, uuid.UUID(webhook["id"]), parsed, received_at=received_at
        )
        assert ids is not None and len(ids) == 4
        for delivery_id in ids[:2]:
            assert (
                await lifecycle.finish_delivery(conn, delivery_id, DeliveryStatus.DELIVERED)
            ).alert is None

    # The two last rows held, so that both finishes are under way (each statement's snapshot taken)
    # before either changes its delivery; then let go at once.
    async with pool.acquire() as holder:
        transaction = holder.transaction()
        await transaction.start()
        await holder.execute("SELECT 1 FROM deliveries WHERE id = ANY($1) FOR UPDATE", ids[2:])
        finishing = [asyncio.create_task(_finish(pool, d, last)) for d in ids[2:]]
        await wait_until(lambda: _waiting(pool, 2), "both finishes waiting on a lock")
        await transaction.commit()
        finished = await asyncio.wait_for(asyncio.gather(*finishing), timeout=15)

    assert [f.alert["status"] for f in finished if f.alert is not None] == ["successful"]  # one, not 0 or 2
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT status FROM alerts WHERE id = $1", alert_id) == "successful"
        outcomes = await conn.fetchval(
            "SELECT count(*) FROM webhook_call_outcomes WHERE alert_id = $1", alert_id
        )
    assert outcomes == 1
    assert await statistics(client, account, webhook) == counts(1, 1, 0)


async def _finish(pool: asyncpg.Pool, delivery_id: uuid.UUID, status: DeliveryStatus) -> lifecycle.Finished:
    async with pool.acquire() as conn:
        return await lifecycle.finish_delivery(conn, delivery_id, status)


async def _waiting(pool: asyncpg.Pool, count: int) -> bool:
    async with pool.acquire() as conn:  # not the holder's: a transaction reads pg_stat_activity once
        return bool(await conn.fetchval(WAITING) >= count)
