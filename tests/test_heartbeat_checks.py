"""Heartbeats going quiet: the incident a missed ping opens (once), the ping that resolves it, and
the workers' sweep under the ways it can go wrong (two at once, Monoduty's own outage, a worker
dying before it queued the pages). A real worker in real time for the 2-second heartbeat; a clock
the test moves, and the workers' cron job run at will, for the rest."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from aiohttp.test_utils import TestClient
from arq.connections import ArqRedis
from arq.constants import job_key_prefix

from api.responses import timestamp
from engine import db
from engine.heartbeats import checks
from engine.settings import Settings
from tests.support.clock import ManualClock
from tests.support.escalation import new_policy, policy_webhook, step, worker_running
from tests.support.factories import Account, create, make_client
from tests.support.heartbeats import (
    SETTINGS,
    Sweeper,
    forget_heartbeats,
    heartbeat_incidents,
    new_heartbeat,
    ping,
    read,
)
from tests.support.incidents import pages_and_notices, sent
from tests.support.processes import wait_until
from tests.support.services import Services

HOOK = {
    "name": "Backups",
    "notificationTypes": ["EMAIL", "PUSH_NOTIF"],
    "targetChannels": {"email": "ops@example.com", "push": "backups"},
}


@pytest.fixture(autouse=True)
async def _forget(pool: asyncpg.Pool) -> AsyncIterator[None]:
    yield
    await forget_heartbeats(pool)


@pytest.fixture
def hb_settings(settings: Settings) -> Settings:
    return settings.with_(**SETTINGS)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def app(hb_settings: Settings, redis: ArqRedis, clock: ManualClock) -> AsyncIterator[TestClient]:
    client = await make_client(hb_settings, clock=clock)
    yield client
    await client.close()


@pytest.fixture
def sweep(hb_settings: Settings, pool: asyncpg.Pool, redis: ArqRedis, clock: ManualClock) -> Sweeper:
    return Sweeper(hb_settings, pool, redis, clock)


def parse(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


@pytest.mark.slow  # over 5 s: run with the slow tests
async def test_a_two_second_heartbeat_pings_goes_quiet_comes_back_starts_and_fails(
    hb_settings: Settings, redis: ArqRedis, pool: asyncpg.Pool, account: Account
) -> None:
    client = await make_client(hb_settings)  # the real clock, as the worker's
    try:
        webhook = await create(client, account, HOOK)
        heartbeat = await new_heartbeat(client, account, webhook, period="2s", grace="1s")
        async with worker_running(hb_settings):
            for _ in range(8):  # a job pinging every half second, for four seconds
                await ping(client, heartbeat)
                await asyncio.sleep(0.5)
                assert (await read(client, account, heartbeat))["status"] == "up"
            assert await heartbeat_incidents(pool, heartbeat) == []

            # It goes quiet: one incident within period + grace + one sweep of the last ping.
            last = parse((await read(client, account, heartbeat))["last_ping_at"])
            (late,) = await wait_until(lambda: heartbeat_incidents(pool, heartbeat), "the late incident")
            assert timedelta(seconds=3) <= late["created_at"] - last <= timedelta(seconds=4.5)
            assert late["title"] == "Heartbeat nightly backup is late (last ping 3 s ago)"
            assert (await read(client, account, heartbeat))["status"] == "down"
            await wait_until(
                lambda: _pages(pool, webhook, 2),
                "its pages on the webhook's EMAIL and PUSH_NOTIF",
                timeout=10,
            )

            # It pings again: resolved at once ("is back"), the RESOLVED notices go out.
            await ping(client, heartbeat)
            (late,) = await heartbeat_incidents(pool, heartbeat)
            assert (late["status"], late["resolved_by"]) == ("resolved", "sender")
            await wait_until(lambda: _notices(pool, webhook, 2), "the RESOLVED notices", timeout=10)

            # A run starts and never finishes: late a grace after its start.
            await ping(client, heartbeat, "/start")
            started = parse((await read(client, account, heartbeat))["started_at"])
            unfinished = await wait_until(lambda: _nth(pool, heartbeat, 2), "the unfinished run's incident")
            assert timedelta(seconds=1) <= unfinished["created_at"] - started <= timedelta(seconds=2.5)
            assert (
                unfinished["title"]
                == "Heartbeat nightly backup is late (a run started 1 s ago has not finished)"
            )
            await wait_until(lambda: _pages(pool, webhook, 4), "its pages", timeout=10)

            # It fails: the incident opens with the ping, no sweep needed.
            await ping(client, heartbeat)  # back first
            await ping(client, heartbeat, "/fail", data=b"backup: disk full")
            incidents = await heartbeat_incidents(pool, heartbeat)
            assert [(i["title"], i["status"]) for i in incidents] == [
                ("Heartbeat nightly backup is late (last ping 3 s ago)", "resolved"),
                ("Heartbeat nightly backup is late (a run started 1 s ago has not finished)", "resolved"),
                ("Heartbeat nightly backup failed", "triggered"),
            ]
            assert "backup: disk full" in incidents[2]["message"]
            await wait_until(lambda: _pages(pool, webhook, 6), "the failure's pages", timeout=10)
    finally:
        await client.close()


async def _nth(pool: asyncpg.Pool, heartbeat: dict, n: int) -> asyncpg.Record | None:
    incidents = await heartbeat_incidents(pool, heartbeat)
    return incidents[n - 1] if len(incidents) >= n else None


async def _pages(pool: asyncpg.Pool, webhook: dict, count: int) -> bool:
    return len(pages_and_notices(await sent(pool, webhook))[0]) >= count


async def _notices(pool: asyncpg.Pool, webhook: dict, count: int) -> bool:
    return len(pages_and_notices(await sent(pool, webhook))[1]) >= count


async def test_two_workers_sweeping_at_once_open_one_incident_per_lateness(
    app: TestClient,
    account: Account,
    clock: ManualClock,
    hb_settings: Settings,
    services: Services,
    redis: ArqRedis,
    pool: asyncpg.Pool,
) -> None:
    webhook = await create(app, account, HOOK)
    heartbeats = [await new_heartbeat(app, account, webhook, name=f"job {n}") for n in range(20)]
    pools = [await db.create_pool(services.database_url, max_size=3) for _ in range(2)]
    try:
        workers = [Sweeper(hb_settings, own, redis, clock) for own in pools]
        await workers[0]()  # the workers are here
        for _ in range(3):  # late, back, late, back, late
            for heartbeat in heartbeats:
                await ping(app, heartbeat)
            clock.advance(3.5)
            went_down = await asyncio.gather(*(worker() for worker in workers for _ in range(3)))
            assert sum(went_down) == 20
    finally:
        for own in pools:
            await own.close()
    for heartbeat in heartbeats:
        incidents = await heartbeat_incidents(pool, heartbeat)
        assert [i["status"] for i in incidents] == ["resolved", "resolved", "triggered"]
    async with pool.acquire() as conn:
        alerts = await conn.fetchval(
            "SELECT count(*) FROM alerts WHERE webhook_id = $1", uuid.UUID(webhook["id"])
        )
    assert alerts == 20 * 3 + 20 * 2  # each lateness once, each return once


async def test_workers_away_longer_than_the_grace_raise_no_false_alarm_and_a_real_lateness_once(
    app: TestClient, account: Account, clock: ManualClock, sweep: Sweeper, pool: asyncpg.Pool
) -> None:
    webhook = await create(app, account, HOOK)
    steady = await new_heartbeat(app, account, webhook, name="steady")
    quiet = await new_heartbeat(app, account, webhook, name="quiet")
    await ping(app, steady)
    await ping(app, quiet)
    await sweep()
    # Monoduty is away for ten minutes: no sweep, and the jobs' pings (due every 2 s) are refused.
    clock.advance(600)
    assert await sweep() == 0  # the workers are back: each grace restarts from now
    assert (await read(app, account, steady))["down_at"] == timestamp(clock.now() + timedelta(seconds=1))
    clock.advance(0.5)
    await ping(app, steady)  # its job pings within the grace given again
    clock.advance(1)
    assert await sweep() == 1  # the other one is really late, and says since when
    assert await heartbeat_incidents(pool, steady) == []
    (late,) = await heartbeat_incidents(pool, quiet)
    assert late["title"] == "Heartbeat quiet is late (last ping 10 min ago)"
    for _ in range(3):
        clock.advance(0.4)
        await ping(app, steady)
        assert await sweep() == 0  # reported once
    assert len(await heartbeat_incidents(pool, quiet)) == 1
    assert (await read(app, account, steady))["status"] == "up"


async def test_workers_away_for_less_than_the_grace_change_nothing(
    app: TestClient, account: Account, clock: ManualClock, sweep: Sweeper, pool: asyncpg.Pool
) -> None:
    heartbeat = await new_heartbeat(app, account, await create(app, account, HOOK), period="1m", grace="1m")
    await ping(app, heartbeat)
    await sweep()
    clock.advance(100)
    assert await sweep() == 0  # due at 120 s
    clock.advance(30)  # away 30 s: less than the grace, so its job had its grace with Monoduty up
    assert await sweep() == 1
    assert len(await heartbeat_incidents(pool, heartbeat)) == 1


async def test_a_cron_heartbeat_in_berlin_is_expected_at_the_right_instant_across_dst(
    settings: Settings, redis: ArqRedis, pool: asyncpg.Pool, account: Account
) -> None:
    clock = ManualClock(datetime(2025, 3, 29, 2, 0, 30, tzinfo=UTC))  # 03:00:30 CET, Saturday
    client = await make_client(settings.with_(**SETTINGS), clock=clock)
    sweep = Sweeper(settings, pool, redis, clock)
    try:
        body = {"cron": "0 3 * * *", "timeZone": "Europe/Berlin", "grace": "10m"}
        heartbeat = await new_heartbeat(client, account, await create(client, account, HOOK), **body)
        await ping(client, heartbeat)
        seen = await read(client, account, heartbeat)
        # Sunday 03:00 is CEST: 01:00 UTC, 23 hours on (not 02:00 UTC, 24 hours on).
        assert (seen["next_expected_at"], seen["down_at"]) == (
            "2025-03-30T01:00:00.000Z",
            "2025-03-30T01:10:00.000Z",
        )
        await sweep()
        clock.at = datetime(2025, 3, 30, 1, 9, 59, tzinfo=UTC)
        await sweep()
        assert (await read(client, account, heartbeat))["status"] == "late"  # overdue, in its grace
        clock.advance(1)
        await sweep()
        (late,) = await heartbeat_incidents(pool, heartbeat)
        assert late["title"] == "Heartbeat nightly backup is late (last ping 23 h ago)"
        clock.advance(60)
        await ping(client, heartbeat)  # Sunday's run, late: back, and Monday's expected at 01:00 UTC
        seen = await read(client, account, heartbeat)
        assert (seen["status"], seen["next_expected_at"]) == ("up", "2025-03-31T01:00:00.000Z")
    finally:
        await client.close()


async def test_a_late_heartbeat_pages_through_its_webhooks_escalation_policy(
    app: TestClient, account: Account, clock: ManualClock, sweep: Sweeper, pool: asyncpg.Pool, redis: ArqRedis
) -> None:
    policy = await new_policy(app, account, step(5, account))
    heartbeat = await new_heartbeat(app, account, await policy_webhook(app, account, policy))
    await ping(app, heartbeat)
    await sweep()  # the workers are here
    clock.advance(3)
    await sweep()
    (late,) = await heartbeat_incidents(pool, heartbeat)
    assert (str(late["escalation_policy_id"]), late["next_escalation_at"]) == (policy["id"], clock.now())
    assert await redis.exists(f"{job_key_prefix}escalate:{late['id']}:0")  # its first step woken now
    # Resolved, so that no later test's worker goes on escalating it.
    resp = await app.post(f"/api/incidents/{late['id']}/resolve", headers=account.headers)
    assert resp.status == 200


async def test_a_paused_webhooks_heartbeats_open_nothing_until_it_is_resumed(
    app: TestClient, account: Account, clock: ManualClock, sweep: Sweeper, pool: asyncpg.Pool
) -> None:
    webhook = await create(app, account, HOOK)
    heartbeat = await new_heartbeat(app, account, webhook)
    await ping(app, heartbeat)
    await sweep()  # the workers are here
    url = f"/api/webhooks/{webhook['id']}"
    assert (await app.patch(url, json={"status": "PAUSED"}, headers=account.headers)).status == 200
    clock.advance(1)
    await ping(app, heartbeat, "/fail")  # kept, and it pages nobody
    assert (await read(app, account, heartbeat))["status"] == "up"
    clock.advance(3.5)
    assert await sweep() == 0
    assert await heartbeat_incidents(pool, heartbeat) == []
    clock.advance(1)
    await ping(app, heartbeat)  # its pings still count: not late once resumed
    assert (await app.patch(url, json={"status": "ACTIVE"}, headers=account.headers)).status == 200
    assert await sweep() == 0
    clock.advance(3)
    assert await sweep() == 1  # a ping missed after the resume is a lateness
    assert len(await heartbeat_incidents(pool, heartbeat)) == 1


async def test_pages_a_worker_did_not_queue_before_it_died_are_queued_by_the_next_sweep(
    app: TestClient, account: Account, clock: ManualClock, sweep: Sweeper, pool: asyncpg.Pool, redis: ArqRedis
) -> None:
    webhook = await create(app, account, HOOK)
    heartbeat = await new_heartbeat(app, account, webhook)
    await ping(app, heartbeat)
    await sweep()  # the workers are here
    clock.advance(3)
    # The sweep's transaction alone, as a worker leaves it that dies right after its commit.
    assert (await checks.sweep(pool, clock.now(), every=1)).down == 1
    async with pool.acquire() as conn:
        deliveries = await conn.fetch(
            "SELECT d.id FROM deliveries d JOIN alerts a ON a.id = d.alert_id WHERE a.webhook_id = $1",
            uuid.UUID(webhook["id"]),
        )
    assert len(deliveries) == 2
    assert not any([await redis.exists(f"{job_key_prefix}{d['id']}") for d in deliveries])
    await sweep()  # the next tick, on any worker
    assert all([await redis.exists(f"{job_key_prefix}{d['id']}") for d in deliveries])
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM heartbeat_alerts") == 0


async def test_a_sweep_or_a_ping_stuck_in_its_transaction_holds_no_other_sweep_up(
    app: TestClient, account: Account, clock: ManualClock, sweep: Sweeper, pool: asyncpg.Pool
) -> None:
    webhook = await create(app, account, HOOK)
    pinged, other = [await new_heartbeat(app, account, webhook, name=name) for name in ("pinged", "other")]
    await ping(app, pinged)
    await ping(app, other)
    await sweep()
    clock.advance(600)  # the workers were away: the next sweep restarts both graces
    async with pool.acquire() as stuck:
        transaction = stuck.transaction()
        await transaction.start()
        # A ping frozen holding its heartbeat's row, and a sweep frozen inside its note.
        await stuck.execute("SELECT 1 FROM heartbeats WHERE id = $1 FOR UPDATE", uuid.UUID(pinged["id"]))
        await checks.note_sweep(stuck, clock.now(), away=5)
        assert await asyncio.wait_for(sweep(), timeout=5) == 0  # the other workers go on
        await transaction.rollback()
    assert await sweep() == 0  # the outage is still seen, and both graces restart
    for heartbeat in (pinged, other):
        assert (await read(app, account, heartbeat))["down_at"] == timestamp(
            clock.now() + timedelta(seconds=1)
        )
