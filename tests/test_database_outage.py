"""PostgreSQL out of reach under a running worker: jobs wait for it, and nothing is lost or doubled.

A real `monoduty worker` reaches PostgreSQL through a TCP proxy the test cuts (open connections
closed, new ones refused) or blackholes (new ones hang), then reopens, while the API (on a direct
connection) keeps taking alerts.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest
from aiohttp.test_utils import TestClient
from arq.connections import ArqRedis

from engine import queue
from engine.observability import presence
from engine.settings import NtfySettings, Settings
from tests.support.factories import Account, counts, make_client
from tests.support.faults import TcpProxy, WorkerProcess
from tests.support.processes import wait_until
from tests.support.providers import FakeProviders, Reply
from tests.support.services import Services
from workers.outages import WAIT_TRIES
from workers.worker import build_worker

TOPIC = "db-outage"


@dataclass
class Outage:
    proxy: TcpProxy
    client: TestClient
    worker: WorkerProcess
    webhook: dict

    async def send(self, title: str) -> str:
        path = self.webhook["webhook_url"].removeprefix("http://monoduty.test")
        resp = await self.client.post(path, json={"title": title, "message": title})
        assert resp.status == 202, await resp.text()
        return (await resp.json())["alert_id"]

    async def statistics(self, account: Account) -> dict:
        resp = await self.client.get(f"/api/webhooks/{self.webhook['id']}", headers=account.headers)
        return (await resp.json())["webhook"]["statistics"]

    def deferred(self, job: str, job_id: str = r"\S+") -> bool:
        return re.search(rf"{job} {job_id} deferred", self.worker.output()) is not None


@pytest.fixture
async def outage(
    services: Services,
    redis: ArqRedis,
    account: Account,
    fake_providers: FakeProviders,
    tmp_path: Path,
) -> AsyncIterator[Outage]:
    """A worker whose database goes through a proxy, once it is running; the API's does not."""
    proxy = TcpProxy.to_database(services.database_url)
    await proxy.start()
    settings = Settings(
        database_url=services.database_url,
        redis_url=services.redis_url,
        public_url="http://monoduty.test",
        require_https=False,
        ntfy=NtfySettings(fake_providers.url),
    )
    client = await make_client(settings)
    worker = WorkerProcess(
        tmp_path / "worker.log",
        MONODUTY_DATABASE_URL=proxy.url(services.database_url),
        MONODUTY_REDIS_URL=services.redis_url,
        MONODUTY_NTFY_URL=fake_providers.url,
        MONODUTY_RETRY_BASE_DELAY="0.2",
        MONODUTY_MAX_ATTEMPTS="3",
        MONODUTY_JOB_TIMEOUT="3",
    )
    try:
        resp = await client.post(
            "/api/webhooks",
            json={"name": "dbx", "notificationTypes": ["PUSH_NOTIF"], "targetChannels": {"push": TOPIC}},
            headers=account.headers,
        )
        assert resp.status == 201, await resp.text()

        async def counted() -> bool:
            return not worker.alive() or await presence.count_alive(redis, presence.WORKERS) == 1

        await wait_until(counted, "the worker to say it is alive", timeout=20)
        assert worker.alive(), worker.output()[-3000:]
        yield Outage(proxy, client, worker, (await resp.json())["webhook"])
        assert worker.alive(), worker.output()[-3000:]
    finally:
        proxy.restore()
        code = await asyncio.to_thread(worker.stop)  # the proxy runs in this loop: keep it running
        await client.close()
        await proxy.stop()
    assert code == 0, worker.output()[-3000:]


async def deliveries(pool: asyncpg.Pool, alert_ids: list[str]) -> dict[str, asyncpg.Record]:
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT alert_id, status, attempts FROM deliveries WHERE alert_id = ANY($1::uuid[])",
            [uuid.UUID(a) for a in alert_ids],
        )
    return {str(r["alert_id"]): r for r in rows}


async def wait_final(pool: asyncpg.Pool, alert_ids: list[str], what: str) -> dict[str, asyncpg.Record]:
    async def final() -> bool:
        rows = await deliveries(pool, alert_ids)
        return len(rows) == len(alert_ids) and all(r["status"] != "pending" for r in rows.values())

    await wait_until(final, what, timeout=15)
    return await deliveries(pool, alert_ids)


async def test_jobs_wait_for_a_refused_database_and_nothing_is_lost(
    outage: Outage,
    pool: asyncpg.Pool,
    account: Account,
    fake_providers: FakeProviders,
) -> None:
    # A send in flight when the database goes: its outcome cannot be recorded.
    fake_providers.script(TOPIC, Reply(delay=1.0))
    in_flight = await outage.send("in flight")

    async def sending() -> bool:
        return bool(fake_providers.requests) or not outage.worker.alive()

    await wait_until(sending, "the send to start", timeout=10)
    await outage.proxy.stop()
    # An alert accepted during the outage: the worker cannot even store it.
    during = await outage.send("during")

    async def both_deferred() -> bool:
        return (
            outage.deferred("deliver") and outage.deferred("process_alert", during)
        ) or not outage.worker.alive()

    await wait_until(both_deferred, "both jobs to meet the outage", timeout=10)
    await outage.proxy.start()  # the database is back, on the same address

    rows = await wait_final(pool, [in_flight, during], "both alerts to be delivered after the outage")
    assert {a: r["status"] for a, r in rows.items()} == {in_flight: "delivered", during: "delivered"}
    # The send whose outcome was lost ran again (at least once), as a second counted attempt.
    assert rows[in_flight]["attempts"] == 2 and rows[during]["attempts"] == 1
    assert sorted(r.body for r in fake_providers.requests) == ["during", "in flight", "in flight"]
    assert await outage.statistics(account) == counts(2, 2, 0)


async def test_a_silent_database_is_waited_for_too(
    outage: Outage,
    pool: asyncpg.Pool,
    account: Account,
    fake_providers: FakeProviders,
) -> None:
    """No refusal, no answer (a dropped route): the job must not run into arq's timeout, which is final."""
    outage.proxy.blackhole()
    alert_id = await outage.send("unanswered")

    async def deferred() -> bool:
        return outage.deferred("process_alert", alert_id) or not outage.worker.alive()

    await wait_until(deferred, "the job to give up on this try and wait", timeout=10)
    outage.proxy.restore()

    rows = await wait_final(pool, [alert_id], "the alert to be delivered once the database answers")
    assert (rows[alert_id]["status"], rows[alert_id]["attempts"]) == ("delivered", 1)
    assert [r.body for r in fake_providers.requests] == ["unanswered"]
    assert await outage.statistics(account) == counts(1, 1, 0)


def test_jobs_keep_waiting_for_as_long_as_arq_keeps_them(settings: Settings) -> None:
    """arq gives up on a job after max_tries: waiting for the database must not use them up."""
    functions = build_worker(settings).functions
    for name in (queue.DELIVER, queue.PROCESS_ALERT):
        assert (functions[name].max_tries or 0) >= WAIT_TRIES
