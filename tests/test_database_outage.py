"""PostgreSQL out of reach under a running worker: jobs wait for it, and nothing is lost or doubled.

A real `monoduty worker` reaches PostgreSQL through a TCP proxy the test cuts (open connections
closed, new ones refused) and reopens on the same port, while the API keeps taking alerts.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
from arq.connections import ArqRedis

from engine import queue, registry
from engine.settings import NtfySettings, Settings
from tests.conftest import Account, make_client
from tests.faults import TcpProxy, WorkerProcess
from tests.providers import FakeProviders, Reply, fake_providers  # noqa: F401 - fixture
from tests.services import Services
from tests.test_shutdown import wait_for
from workers.outages import WAIT_TRIES
from workers.worker import build_worker

TOPIC = "db-outage"


async def deliveries(pool: asyncpg.Pool, alert_ids: list[str]) -> list[asyncpg.Record]:
    async with pool.acquire() as conn:
        return await conn.fetch(
            "SELECT alert_id, status, attempts FROM deliveries WHERE alert_id = ANY($1::uuid[])",
            [uuid.UUID(a) for a in alert_ids],
        )


async def test_jobs_wait_for_the_database_and_nothing_is_lost(
    services: Services,
    redis: ArqRedis,
    pool: asyncpg.Pool,
    account: Account,
    fake_providers: FakeProviders,  # noqa: F811
    tmp_path: Path,
) -> None:
    parts = urlsplit(services.database_url)
    proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    await proxy.start()
    settings = Settings(
        database_url=services.database_url,  # the API's database stays reachable
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
    )
    try:
        resp = await client.post(
            "/api/webhooks",
            json={"name": "dbx", "notificationTypes": ["PUSH_NOTIF"], "targetChannels": {"push": TOPIC}},
            headers=account.headers,
        )
        assert resp.status == 201, await resp.text()
        webhook = (await resp.json())["webhook"]
        path = webhook["webhook_url"].removeprefix("http://monoduty.test")

        async def counted() -> bool:
            return not worker.alive() or await registry.count_alive(redis, registry.WORKERS) == 1

        await wait_for(counted, 20, "the worker to say it is alive")

        # A send in flight when the database goes: its outcome cannot be recorded.
        fake_providers.script(TOPIC, Reply(delay=1.0))
        resp = await client.post(path, json={"title": "in flight", "message": "in flight"})
        in_flight = (await resp.json())["alert_id"]

        async def sending() -> bool:
            return bool(fake_providers.requests) or not worker.alive()

        await wait_for(sending, 10, "the send to start")
        await proxy.stop()
        # An alert accepted during the outage: the worker cannot even store it.
        resp = await client.post(path, json={"title": "during", "message": "during"})
        assert resp.status == 202
        during = (await resp.json())["alert_id"]

        async def both_deferred() -> bool:
            log = worker.output()
            deferred = re.search(r"deliver \S+ deferred", log) and f"process_alert {during} deferred" in log
            return bool(deferred) or not worker.alive()

        await wait_for(both_deferred, 10, "both jobs to meet the outage")
        await proxy.start()  # the database is back, on the same address

        async def all_final() -> bool:
            rows = await deliveries(pool, [in_flight, during])
            return len(rows) == 2 and all(r["status"] != "pending" for r in rows)

        await wait_for(all_final, 15, "both alerts to be delivered after the outage")
        assert worker.alive(), worker.output()[-3000:]
        resp = await client.get(f"/api/webhooks/{webhook['id']}", headers=account.headers)
        statistics = (await resp.json())["webhook"]["statistics"]
    finally:
        code = await asyncio.to_thread(worker.stop)  # the proxy runs in this loop: keep it running
        await client.close()
        await proxy.stop()
    assert code == 0
    rows = {str(r["alert_id"]): r for r in await deliveries(pool, [in_flight, during])}
    assert {a: r["status"] for a, r in rows.items()} == {in_flight: "delivered", during: "delivered"}
    # The send whose outcome was lost ran again (at least once), as a second counted attempt.
    assert rows[in_flight]["attempts"] == 2 and rows[during]["attempts"] == 1
    assert sorted(r.body for r in fake_providers.requests) == ["during", "in flight", "in flight"]
    assert statistics == {"total_calls": 2, "successful_calls": 2, "failed_calls": 0, "pending_calls": 0}


def test_jobs_keep_waiting_for_as_long_as_arq_keeps_them(settings: Settings) -> None:
    """arq gives up on a job after max_tries: waiting for the database must not use them up."""
    functions = build_worker(settings).functions
    for name in (queue.DELIVER, queue.PROCESS_ALERT):
        assert (functions[name].max_tries or 0) >= WAIT_TRIES
