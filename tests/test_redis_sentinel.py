"""Redis behind Sentinel: a real primary, a replica and three redis-sentinels on loopback, real
`monoduty api` and `monoduty worker` processes on ``MONODUTY_REDIS_URL=redis+sentinel://...``.

- A malformed Sentinel URL stops `monoduty api` at start-up with a message saying what is wrong
  (and never the password it holds).
- The primary is SIGKILLed (a host crash), or handed over by ``SENTINEL FAILOVER`` (a planned
  switch: the sentinels promote the replica, name it a second later, and turn the old primary,
  which took writes all along, into a replica ten seconds later, discarding what it took), in the
  middle of a steady stream of alerts: the senders get 202 or 503, never a 500; the workers ride
  out the failover and never exit; no alert answered 202 is lost (engine.replicated: a 202 waits
  until the replica holds the alert; without it a planned failover lost 214 of 900), and every
  stored alert is delivered. The planned failover is still an expected failure: it passes in most
  runs, and lost 12 of 700 in one of three.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import asyncpg
import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ReadOnlyError
from redis.exceptions import TimeoutError as RedisTimeoutError

from engine import queue
from engine.alerts import call_counts
from engine.observability import presence
from engine.settings import Settings
from tests.support.factories import Account, counts
from tests.support.faults import RedisSentinel, RedisServer, WorkerProcess
from tests.support.outages import TOPIC
from tests.support.processes import ApiProcess, monoduty, monoduty_env, wait_until
from tests.support.providers import FakeProviders
from tests.support.services import Services

QUEUE = Settings().queue_name
SERVICE = "monoduty-test"
RATE = 150  # alerts per second, steady
STREAM_SECONDS = 6.0


def test_a_malformed_sentinel_url_stops_the_api_with_a_clear_message(services: Services) -> None:
    env = monoduty_env(
        MONODUTY_DATABASE_URL=services.database_url,
        MONODUTY_REDIS_URL="redis+sentinel://:hunter2-secret@127.0.0.1:26379,sentinel-2/",
    )
    result = monoduty("api", "--port", "1", env=env, check=False, timeout=60)
    assert result.returncode != 0
    assert "MONODUTY_REDIS_URL" in result.stderr and "host:port" in result.stderr, result.stderr
    assert "hunter2-secret" not in result.stderr + result.stdout


@dataclass
class Stream:
    """What the senders saw: alert id -> when its 202 came (monotonic), and every status."""

    accepted: dict[str, float] = field(default_factory=dict)
    statuses: Counter[int] = field(default_factory=Counter)


async def send_steadily(session: aiohttp.ClientSession, path: str, stream: Stream) -> None:
    async def post(n: int) -> None:
        try:
            async with session.post(path, json={"title": f"sentinel {n}"}) as resp:
                stream.statuses[resp.status] += 1
                if resp.status == 202:
                    stream.accepted[(await resp.json())["alert_id"]] = time.monotonic()
        except aiohttp.ClientError:
            stream.statuses[0] += 1

    loop = asyncio.get_running_loop()
    start, posts = loop.time(), []
    for n in range(int(RATE * STREAM_SECONDS)):
        await asyncio.sleep(max(0.0, start + n / RATE - loop.time()))  # the load's pace, not a wait
        posts.append(asyncio.create_task(post(n)))
    await asyncio.gather(*posts)


async def replication_lags(primary: RedisServer, replica: RedisServer, until: asyncio.Event) -> list[float]:
    """Seconds from a write's answer on the primary to the replica holding it, sampled while the
    stream runs (read back in a tight loop: a measurement, not a wait)."""
    writer = Redis(host="127.0.0.1", port=primary.port, socket_timeout=1)
    reader = Redis(host="127.0.0.1", port=replica.port, socket_timeout=1)
    lags: list[float] = []
    try:
        while not until.is_set():
            value = await writer.incr("sentinel-test:probe")
            written = time.monotonic()
            while int(await reader.get("sentinel-test:probe") or 0) < value:
                if time.monotonic() - written > 5:
                    break
            lags.append(time.monotonic() - written)
            await asyncio.sleep(0.05)  # the sampling pace
    except (RedisConnectionError, RedisTimeoutError, ReadOnlyError):
        pass  # the primary is gone or demoted: sampling ends
    finally:
        await writer.aclose()
        await reader.aclose()
    return lags


async def fail_over(
    how: str, primary: RedisServer, sentinel: RedisSentinel, stream: Stream, at: list[float]
) -> None:
    await wait_until(lambda: len(stream.accepted) >= RATE * STREAM_SECONDS / 3, "a third of the stream")
    at.append(time.monotonic())
    if how == "kill":
        primary.kill()
    else:
        client = Redis(host="127.0.0.1", port=sentinel.port, socket_timeout=2)
        try:
            await client.execute_command("SENTINEL", "FAILOVER", SERVICE)
        finally:
            await client.aclose()


@pytest.mark.slow
@pytest.mark.parametrize(
    "how",
    [
        "kill",
        pytest.param(
            "sentinel-failover",
            marks=pytest.mark.xfail(
                strict=False,
                reason="rare residual loss (README): 12 of 700 accepted alerts lost in 1 of 3 runs, answered"
                " about 0.3 s after the sentinels named the new primary; cause not found yet",
            ),
        ),
    ],
)
async def test_a_failover_under_a_stream_of_alerts_loses_only_the_replication_lag(
    how: str,
    services: Services,
    pool: asyncpg.Pool,
    account: Account,
    fake_providers: FakeProviders,
    tmp_path: Path,
    record_property: Callable[[str, object], None],
) -> None:
    primary = RedisServer(tmp_path / "primary")
    primary.start()
    replica = RedisServer(tmp_path / "replica", replica_of=primary.port)
    replica.start()
    sentinels = [
        RedisSentinel(tmp_path / f"sentinel-{n}", primary, service=SERVICE, quorum=2) for n in range(3)
    ]
    for sentinel in sentinels:
        sentinel.start()
    await wait_until(
        lambda: all(s.replicas_known() for s in sentinels), "the sentinels to know the replica", timeout=30
    )
    url = RedisSentinel.url(sentinels)
    env = {
        "MONODUTY_NTFY_URL": fake_providers.url,
        "MONODUTY_DATABASE_URL": services.database_url,
        "MONODUTY_REDIS_URL": url,
        "MONODUTY_JOB_TIMEOUT": "5",  # a job cut off by the crash runs again 10 s later
    }
    api = ApiProcess(
        Services(services.database_url, url),
        tmp_path / "api.log",
        MONODUTY_REQUIRE_HTTPS="off",
        MONODUTY_RATE_LIMIT_INBOUND="1000000/minute",
        MONODUTY_NTFY_URL=fake_providers.url,
    )
    workers = [WorkerProcess(tmp_path / f"worker-{n}.log", **env) for n in range(2)]
    redis = await queue.connect(url)
    stream, killed, sampled = Stream(), list[float](), asyncio.Event()
    try:

        async def started() -> bool:
            assert all(w.alive() for w in workers), [w.output()[-2000:] for w in workers]
            return await presence.count_alive(redis, presence.WORKERS) == len(workers)

        await wait_until(started, "the workers to start", timeout=60)
        async with aiohttp.ClientSession(api.url) as session:
            resp = await session.post(
                "/api/webhooks",
                json={
                    "name": "sentinel",
                    "notificationTypes": ["PUSH_NOTIF"],
                    "targetChannels": {"push": TOPIC},
                    "dedupBy": "none",  # every stored alert pages: counted one by one
                },
                headers=account.headers,
            )
            assert resp.status == 201, await resp.text()
            webhook = (await resp.json())["webhook"]
            inbound = webhook["webhook_url"].removeprefix(api.url)
            lags_task = asyncio.create_task(replication_lags(primary, replica, sampled))
            await asyncio.gather(
                send_steadily(session, inbound, stream), fail_over(how, primary, sentinels[0], stream, killed)
            )
            sampled.set()
            lags = await lags_task
        assert [s.primary() for s in sentinels] == [("127.0.0.1", replica.port)] * 3

        async def drained() -> bool:
            jobs = await redis.zrange(QUEUE, 0, -1)
            return not [j for j in jobs if not j.startswith(b"cron:")]

        await wait_until(drained, "the workers to drain the queue on the new primary", timeout=120)
        assert all(w.alive() for w in workers), [w.output()[-3000:] for w in workers]
        async with pool.acquire() as conn:
            stored = await conn.fetch(
                "SELECT id, status FROM alerts WHERE webhook_id = $1", uuid.UUID(webhook["id"])
            )
    finally:
        await redis.aclose()
        for worker in workers:
            worker.stop()
        api.stop()
        for sentinel in sentinels:
            sentinel.stop()
        replica.stop()
        primary.stop()

    crash = killed[0]
    stored_ids = {str(r["id"]) for r in stored}
    lost = {a: t for a, t in stream.accepted.items() if a not in stored_ids}
    after = [a for a, t in stream.accepted.items() if t > crash]
    lags_ms = sorted(lag * 1000 for lag in lags)
    print(
        f"sentinel failover ({how}): {len(stream.accepted)} accepted of {sum(stream.statuses.values())} sent "
        f"{dict(stream.statuses)}; {len(lost)} lost (answered "
        f"{', '.join(f'{(crash - t) * 1000:.0f}' for t in lost.values()) or '-'} ms before the failover,"
        " negative: after); "
        f"{len(after)} accepted after the failover; replication lag over {len(lags_ms)} samples: "
        f"median {lags_ms[len(lags_ms) // 2]:.2f} ms, max {lags_ms[-1]:.2f} ms"
    )
    record_property("lost", len(lost))
    record_property("replication_lag_max_ms", lags_ms[-1])
    assert set(stream.statuses) <= {202, 503}, f"only 202 or 503 (retry) may answer: {stream.statuses}"
    assert stream.statuses[503], "the failover was not noticed: the test did not test it"
    assert after, "no alert was accepted after the failover"
    assert not lost, "alerts answered 202 were lost"
    # Everything stored is delivered and counted once (an alert answered 503 may be stored too:
    # the old primary took it and died before answering; the sender's retry is a new alert).
    assert all(r["status"] == "successful" for r in stored), Counter(r["status"] for r in stored)
    sent = Counter(r.body for r in fake_providers.requests)
    assert len(sent) >= len(stored)
    async with pool.acquire() as conn:
        row = await conn.fetchrow(
            f"SELECT {call_counts.COLUMNS},"
            " (SELECT count(*) FROM incidents i WHERE i.webhook_id = $1 AND i.status <> 'resolved')"
            " AS incidents_open"
            " FROM webhooks WHERE id = $1",
            uuid.UUID(webhook["id"]),
        )
    assert dict(row) == counts(len(stored), len(stored), 0)
