"""Noise caps as an on-call engineer meets them: a webhook with 200 incidents open pages once more
for all that come after ("N more incidents on ..."), and a storm of new incidents pages one digest a
minute instead of a page each. Real PostgreSQL, Redis and arq workers; pages counted in the outbox."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient
from arq.connections import ArqRedis

from engine.incidents import digests
from engine.settings import RateLimit, Settings
from tests.support.clock import ShiftedClock
from tests.support.factories import WEBHOOK, Account, create, make_client, path_of, run_worker

AFTER_A_MINUTE = ShiftedClock(61)
CHANNELS = ["CALL", "EMAIL", "PUSH_NOTIF", "SMS"]
OVERFLOW_SUBJECT = re.compile(r"\d+ more incidents? on Production Alerts")


@pytest.fixture
async def roomy(settings: Settings, redis: ArqRedis) -> AsyncIterator[TestClient]:
    """The app with room for a storm in its inbound rate limit."""
    client = await make_client(settings.with_(rate_limit_inbound=RateLimit(10_000, 60)))
    yield client
    await client.close()


async def post_keys(client: TestClient, webhook: dict[str, Any], keys: range) -> None:
    """One alert for each key, posted 25 at a time."""
    path = path_of(webhook)
    for start in range(keys.start, keys.stop, 25):
        batch = range(start, min(start + 25, keys.stop))
        answers = await asyncio.gather(
            *(
                client.post(path, json={"title": f"Disk full on db-{k}", "dedup_key": f"disk-{k}"})
                for k in batch
            )
        )
        assert [a.status for a in answers] == [202] * len(batch)


async def outbox(pool: asyncpg.Pool, webhook: dict[str, Any]) -> list[tuple[str, str]]:
    """(channel, subject) of every send for the webhook's alerts, in order."""
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT o.channel, o.subject FROM outbox o JOIN alerts a ON a.id = o.alert_id"
            " WHERE a.webhook_id = $1 ORDER BY o.id",
            uuid.UUID(webhook["id"]),
        )
    return [(r["channel"], r["subject"]) for r in rows]


async def open_incidents(pool: asyncpg.Pool, webhook: dict[str, Any]) -> list[asyncpg.Record]:
    async with pool.acquire() as conn:
        return await conn.fetch(
            "SELECT id, number, title, alert_count, dedup_key, digest_id FROM incidents"
            " WHERE webhook_id = $1 AND status <> 'resolved' ORDER BY number",
            uuid.UUID(webhook["id"]),
        )


async def sweep(redis: ArqRedis, settings: Settings, clock: ShiftedClock | None = None) -> None:
    """Run the digest sweep (the workers' cron job) now, then deliver what it queued."""
    await redis.enqueue_job("send_digests", _job_id=f"sweep-{uuid.uuid4()}")
    await run_worker(settings, **({"clock": clock} if clock else {}))


def pages_per_channel(sent: list[tuple[str, str]]) -> Counter[str]:
    return Counter(channel for channel, _ in sent)


@pytest.mark.slow  # over 5 s: run with the slow tests
async def test_250_new_keys_make_200_incidents_and_one_overflow_that_pages_once(
    roomy: TestClient, account: Account, pool: asyncpg.Pool, settings: Settings, redis: ArqRedis
) -> None:
    webhook = await create(roomy, account, WEBHOOK)
    await post_keys(roomy, webhook, range(250))
    # Two workers at once: the caps are counted under the webhook's row lock, so neither can see
    # room that the other has just taken.
    await asyncio.gather(run_worker(settings), run_worker(settings))

    found = await open_incidents(pool, webhook)
    [overflow] = [i for i in found if i["dedup_key"] == "monoduty:overflow"]
    regular = [i for i in found if i["dedup_key"] != "monoduty:overflow"]
    assert len(regular) == 200
    assert overflow["title"] == "50 more incidents on Production Alerts"
    assert overflow["alert_count"] == 50
    sent = await outbox(pool, webhook)
    # The overflow paged once on each channel; of the 200, the first 20 paged and the storm held
    # the rest for the digest. A page sent while the overflow held one key says so in the singular.
    overflow_pages = [s for s in sent if OVERFLOW_SUBJECT.search(s[1])]
    assert sorted(c for c, _ in overflow_pages) == CHANNELS
    assert pages_per_channel(sent) == dict.fromkeys(CHANNELS, 21)
    assert sum(1 for i in regular if i["digest_id"] is not None) == 180

    # A repeat of a key that overflowed joins the overflow again, and is not counted twice.
    async with pool.acquire() as conn:
        key = await conn.fetchval(
            "SELECT dedup_key FROM incident_overflow_keys WHERE incident_id = $1 LIMIT 1", overflow["id"]
        )
    await post_keys(roomy, webhook, range(int(key.removeprefix("disk-")), int(key.removeprefix("disk-")) + 1))
    await run_worker(settings)
    [overflow] = [i for i in await open_incidents(pool, webhook) if i["dedup_key"] == "monoduty:overflow"]
    assert (overflow["title"], overflow["alert_count"]) == ("50 more incidents on Production Alerts", 51)

    await sweep(redis, settings, AFTER_A_MINUTE)
    digest = [s for s in (await outbox(pool, webhook))[len(sent) :] if "new incidents" in s[1]]
    assert sorted(c for c, _ in digest) == CHANNELS
    assert all(
        subject.startswith("[ERROR] 180 new incidents on Production Alerts, top: #") for _, subject in digest
    )


async def test_a_resolved_overflow_lets_new_keys_page_as_before(
    roomy: TestClient, account: Account, pool: asyncpg.Pool, settings: Settings
) -> None:
    webhook = await create(roomy, account, WEBHOOK)
    cap = 5
    capped = settings.with_(max_open_incidents=cap)
    await post_keys(roomy, webhook, range(7))
    await run_worker(capped)
    found = await open_incidents(pool, webhook)
    assert [i["title"] for i in found][-1] == "2 more incidents on Production Alerts"
    assert len(await outbox(pool, webhook)) == 4 * (cap + 1)

    overflow = found[-1]
    resp = await roomy.post(f"/api/incidents/{overflow['id']}/resolve", headers=account.headers)
    assert resp.status == 200, await resp.text()
    # Still five open: the next new key opens a new overflow, which pages once again.
    await post_keys(roomy, webhook, range(7, 8))
    await run_worker(capped)
    found = await open_incidents(pool, webhook)
    assert found[-1]["title"] == "1 more incident on Production Alerts"
    assert found[-1]["id"] != overflow["id"]
    sent = await outbox(pool, webhook)
    assert len(sent) == 4 * (cap + 1) + 2 + 4  # + the RESOLVED notices, + the new overflow's page

    # With room again, a new key opens its own incident and pages as any other.
    for incident in found[:1] + found[-1:]:
        resp = await roomy.post(f"/api/incidents/{incident['id']}/resolve", headers=account.headers)
        assert resp.status == 200
    await post_keys(roomy, webhook, range(8, 9))
    await run_worker(capped)
    found = await open_incidents(pool, webhook)
    assert [i["title"] for i in found][-1] == "Disk full on db-8"
    expected = f"[ERROR] #{found[-1]['number']} Disk full on db-8"
    last = [c for c, subject in await outbox(pool, webhook) if subject == expected]
    assert sorted(last) == CHANNELS


async def test_a_storm_of_40_new_keys_pages_20_then_one_digest_per_channel(
    roomy: TestClient, account: Account, pool: asyncpg.Pool, settings: Settings, redis: ArqRedis
) -> None:
    webhook = await create(roomy, account, WEBHOOK)
    await post_keys(roomy, webhook, range(40))  # well within 10 s
    await run_worker(settings)
    found = await open_incidents(pool, webhook)
    assert len(found) == 40  # every problem is an incident of its own, acknowledgeable and resolvable
    held = [i for i in found if i["digest_id"] is not None]
    assert len(held) == 20
    assert pages_per_channel(await outbox(pool, webhook)) == dict.fromkeys(CHANNELS, 20)

    # Someone acknowledges one of the held incidents before the digest is due.
    resp = await roomy.post(f"/api/incidents/{held[-1]['id']}/acknowledge", headers=account.headers)
    assert resp.status == 200
    await sweep(redis, settings)  # not due yet: nothing is sent
    assert len(await outbox(pool, webhook)) == 80

    await sweep(redis, settings, AFTER_A_MINUTE)
    sent = await outbox(pool, webhook)
    assert len(sent) == 80 + 4  # not 160: one digest per channel
    digest = sent[80:]
    assert sorted(c for c, _ in digest) == CHANNELS
    first = min(i["number"] for i in held)
    subject = digest[0][1]
    assert subject.startswith(
        f"[ERROR] 19 new incidents on Production Alerts, top: #{first} Disk full on db-"
    )
    await sweep(redis, settings, AFTER_A_MINUTE)  # sent once
    assert len(await outbox(pool, webhook)) == 84

    resp = await roomy.get(f"/api/incidents/{held[0]['id']}", headers=account.headers)
    kinds = [e["kind"] for e in (await resp.json())["incident"]["timeline"]]
    assert "page_held" in kinds and "digest_sent" in kinds

    # A minute on, the storm is over: a new key pages at once again.
    await post_keys(roomy, webhook, range(40, 41))
    await run_worker(settings, clock=ShiftedClock(125))
    last = (await outbox(pool, webhook))[84:]
    assert sorted(c for c, _ in last) == CHANNELS


async def test_a_digest_whose_worker_died_is_sent_by_the_next_sweep(
    roomy: TestClient, account: Account, pool: asyncpg.Pool, settings: Settings, redis: ArqRedis
) -> None:
    webhook = await create(roomy, account, WEBHOOK)
    await post_keys(roomy, webhook, range(25))
    await run_worker(settings)
    assert len(await outbox(pool, webhook)) == 80
    # A sweep that wrote the digest and its deliveries, then died before queueing them.
    async with pool.acquire() as conn:
        taken = await digests.take_due(conn, AFTER_A_MINUTE.now(), [])
    assert taken is not None and len(taken[1]) == 4  # one delivery per (channel, target)
    await run_worker(settings)
    assert len(await outbox(pool, webhook)) == 80  # nothing queued them yet

    await sweep(redis, settings, AFTER_A_MINUTE)
    digest = (await outbox(pool, webhook))[80:]
    assert sorted(c for c, _ in digest) == CHANNELS
    assert digest[0][1].startswith("[ERROR] 5 new incidents on Production Alerts")
