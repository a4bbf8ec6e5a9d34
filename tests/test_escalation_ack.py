"""Stop on acknowledge is a guarantee, not a race: 200 incidents escalate fast (a step every 3 s,
three rounds) under two worker processes, each acknowledged at a random moment; no page of any of them
starts its send after its acknowledge committed, and no page row is sent twice."""

from __future__ import annotations

import asyncio
import random
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest
from aiohttp.test_utils import TestClient
from arq.connections import ArqRedis

from engine.settings import RateLimit, Settings
from tests.support.escalation import add_rule, clear_rules, new_policy, step
from tests.support.factories import WEBHOOK, Account, create, make_client, new_account, path_of
from tests.support.faults import WorkerProcess
from tests.support.processes import wait_until
from tests.support.providers import FakeProviders
from tests.support.services import Services
from tests.support.teams import add_member, new_team

RUNS = 200
LATEST_ACK_SECONDS = 4.0
BATCH = 20  # each run acknowledges at a random moment within this of its alert


@pytest.mark.slow  # over 5 s: run with the slow tests
async def test_no_page_starts_after_its_acknowledge_commits(
    settings: Settings,
    redis: ArqRedis,
    pool: asyncpg.Pool,
    services: Services,
    account: Account,
    fake_providers: FakeProviders,
    tmp_path: Path,
) -> None:
    settings = settings.with_(
        rate_limit_inbound=RateLimit(100_000, 60), rate_limit_api=RateLimit(100_000, 60)
    )
    client = await make_client(settings)
    env = {
        "MONODUTY_DATABASE_URL": services.database_url,
        "MONODUTY_REDIS_URL": services.redis_url,
        "MONODUTY_NTFY_URL": fake_providers.url,
        "MONODUTY_ESCALATION_SWEEP_SECONDS": "1",
        # Bundles as short as the runs are fast: with the default 5 s most pages would wait past
        # their acknowledge (at most 4 s away) and the runs would hardly race.
        "MONODUTY_PAGE_BUNDLE_SECONDS": "0.5",
    }
    workers = [WorkerProcess(tmp_path / f"worker-{n}.log", **env) for n in range(2)]
    try:
        await _runs(client, pool, account, fake_providers)
    finally:
        for worker in workers:
            worker.stop()
        await client.close()


async def _runs(client: TestClient, pool: asyncpg.Pool, account: Account, fake: FakeProviders) -> None:
    primary, backup = await new_account(pool), await new_account(pool)
    team = await new_team(client, account, members={"responder": primary})
    await add_member(client, account, team["id"], backup, "responder")
    topics = ["ack-primary", "ack-backup"]
    for person, topic in zip((primary, backup), topics, strict=True):
        await clear_rules(client, person)
        await add_rule(client, person, "PUSH_NOTIF", topic, 0)
        await add_rule(client, person, "PUSH_NOTIF", f"{topic}-later", 1)  # pending when acknowledged
    policy = await new_policy(
        client, account, step(0.05, primary), step(0.05, backup), repeat=2, team_id=team["id"]
    )
    webhook = await create(
        client, account, {**WEBHOOK, "teamId": team["id"], "escalationPolicyId": policy["id"]}
    )
    rng = random.Random(11)
    acked: dict[uuid.UUID, datetime] = {}

    async def acknowledge(incident_id: uuid.UUID, at: datetime) -> None:
        # The random moment: the stimulus of the run, not a wait for anything.
        await asyncio.sleep(max(0.0, (at - datetime.now(UTC)).total_seconds()))
        resp = await client.post(f"/api/incidents/{incident_id}/acknowledge", headers=account.headers)
        assert resp.status == 200, await resp.text()
        async with pool.acquire() as conn:  # after the commit, on the database's own clock
            acked[incident_id] = await conn.fetchval("SELECT clock_timestamp()")

    # Alerts come in batches, as a monitoring system sends them, not 200 on one webhook at once
    # (whose ingestion, one alert at a time under the webhook's lock, would be the bottleneck).
    runs: list[asyncio.Task[None]] = []
    scheduled: set[uuid.UUID] = set()
    for first in range(0, RUNS, BATCH):
        for n in range(first, first + BATCH):
            body = {"title": f"disk {n} full", "severity": "critical", "dedup_key": f"ack-run-{n}"}
            resp = await client.post(path_of(webhook), json=body)
            assert resp.status == 202, await resp.text()

        async def opened(count: int = first + BATCH) -> list[asyncpg.Record]:
            async with pool.acquire() as conn:
                rows = await conn.fetch(
                    "SELECT id, created_at FROM incidents WHERE webhook_id = $1", uuid.UUID(webhook["id"])
                )
            return rows if len(rows) == count else []

        for incident in await wait_until(opened, "the batch's incidents", timeout=60):
            if incident["id"] not in scheduled:
                scheduled.add(incident["id"])
                at = incident["created_at"] + timedelta(seconds=rng.uniform(0, LATEST_ACK_SECONDS))
                runs.append(asyncio.create_task(acknowledge(incident["id"], at)))
    await asyncio.gather(*runs)
    ids = list(acked)

    async def settled() -> bool:
        async with pool.acquire() as conn:
            return not await conn.fetchval(
                "SELECT EXISTS (SELECT 1 FROM deliveries WHERE incident_id = ANY($1) AND status = 'pending') "
                "OR EXISTS (SELECT 1 FROM pages WHERE incident_id = ANY($1) AND status = 'pending')",
                ids,
            )

    await wait_until(settled, "every page final", timeout=60)
    async with pool.acquire() as conn:
        # Pages and bundles (one message for several incidents' pages to one person).
        deliveries = {
            r["id"]: r
            for r in await conn.fetch(
                "SELECT id, status, attempts, last_attempt_at FROM deliveries"
                " WHERE kind IN ('page', 'bundle')"
                " AND id IN (SELECT delivery_id FROM pages WHERE incident_id = ANY($1))",
                ids,
            )
        }
        pages = await conn.fetch(
            "SELECT id, incident_id, status, reason, sent_at, delivery_id FROM pages "
            "WHERE incident_id = ANY($1)",
            ids,
        )
    sends = sum(1 for r in fake.requests if r.target in topics)
    sent = [p for p in pages if p["status"] == "sent"]
    # A page still counted as sent is in what its delivery said: none started after its acknowledge.
    started_late = [
        p
        for p in sent
        if deliveries[p["delivery_id"]]["attempts"]
        and deliveries[p["delivery_id"]]["last_attempt_at"] > acked[p["incident_id"]]
    ]
    assert started_late == []
    assert [p for p in pages if p["sent_at"] and p["sent_at"] > acked[p["incident_id"]]] == []
    # Every delivery was made for sent pages, each tried once: two workers never sent one row twice.
    assert {p["delivery_id"] for p in sent} <= set(deliveries)
    delivered = [d for d in deliveries.values() if d["status"] == "delivered"]
    assert all(d["attempts"] == 1 for d in delivered)
    assert sends == len(delivered)
    # The runs did race: pages went out before acknowledges, and planned ones were stopped by them.
    reached = {p["incident_id"] for p in sent if deliveries[p["delivery_id"]]["status"] == "delivered"}
    assert len(reached) > RUNS // 4  # (pages a bundle window apart wait for one message)
    stopped = {
        p["incident_id"] for p in pages if p["status"] == "cancelled" and "acknowledged" in p["reason"]
    }
    stopped |= {
        p["incident_id"] for p in pages if deliveries.get(p["delivery_id"], {}).get("status") == "cancelled"
    }
    stopped |= {p["incident_id"] for p in sent if deliveries[p["delivery_id"]]["status"] == "cancelled"}
    assert len(stopped) > RUNS // 2
