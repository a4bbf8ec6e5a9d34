"""A webhook's statistics stay exact while its alerts finish without touching its row: a finished
alert's outcome waits in webhook_call_outcomes until the next call counted moves it in, and every
read adds what waits (engine.alerts.call_counts)."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid

import asyncpg
from aiohttp.test_utils import TestClient
from arq.connections import ArqRedis

from engine.settings import RateLimit, Settings
from tests.support.factories import (
    Account,
    counts,
    make_client,
    path_of,
    run_worker,
    send_alert,
    statistics,
)
from tests.support.providers import FakeProviders, Reply, SmtpServer

ROW = "SELECT total_calls, successful_calls, failed_calls, pending_calls FROM webhooks WHERE id = $1"
WAITING = "SELECT count(*) FROM webhook_call_outcomes WHERE webhook_id = $1"


async def test_outcomes_are_counted_at_once_and_moved_in_by_the_next_call(
    live: TestClient,
    account: Account,
    pool: asyncpg.Pool,
    provider_settings: Settings,
    fake_providers: FakeProviders,
    smtp_server: SmtpServer,
) -> None:
    fake_providers.script("+14155550123", Reply(400))  # the SMS refused for good: the call failed
    webhook, _ = await send_alert(live, account)
    await run_worker(provider_settings)
    webhook_id = uuid.UUID(webhook["id"])
    # The row has not moved (its lock was never waited for); what the API reads has.
    assert tuple(await pool.fetchrow(ROW, webhook_id)) == (1, 0, 0, 1)
    assert await pool.fetchval(WAITING, webhook_id) == 1
    assert await statistics(live, account, webhook) == counts(1, 0, 1)

    resp = await live.post(path_of(webhook), json={"title": "second"})
    assert resp.status == 202
    await run_worker(provider_settings)
    assert await statistics(live, account, webhook) == counts(2, 1, 1)
    # The second call moved the first outcome into the row; its own waits for the next one.
    assert tuple(await pool.fetchrow(ROW, webhook_id)) == (2, 0, 1, 1)
    assert await pool.fetchval(WAITING, webhook_id) == 1


async def test_the_counters_add_up_at_every_read_while_alerts_finish(
    account: Account,
    provider_settings: Settings,
    redis: ArqRedis,
    fake_providers: FakeProviders,
    smtp_server: SmtpServer,
) -> None:
    # Reads as fast as they are answered for as long as the worker runs: more than the API's rate
    # limit allows a key on a fast machine, so this client has room for them.
    live = await make_client(provider_settings.with_(rate_limit_api=RateLimit(1_000_000, 60)))
    try:
        webhook, _ = await send_alert(live, account)
        for n in range(29):
            resp = await live.post(path_of(webhook), json={"title": f"alert {n}"})
            assert resp.status == 202
        reads: list[dict] = []
        # 30 distinct incidents at once would pass the noise caps: the rest would wait for a digest
        # that a later test's worker sends (the database is the session's). Uncapped, each pages now.
        uncapped = dataclasses.replace(provider_settings, storm_threshold=1000, max_open_incidents=1000)
        worker = asyncio.create_task(run_worker(uncapped))
        while not worker.done():
            reads.append(await statistics(live, account, webhook))
        await worker
        reads.append(await statistics(live, account, webhook))
    finally:
        await live.close()
    for read in reads:
        assert read["total_calls"] == read["successful_calls"] + read["failed_calls"] + read["pending_calls"]
        assert read["pending_calls"] >= 0 and read["successful_calls"] <= 30
    assert reads[-1] == counts(30, 30, 0)
