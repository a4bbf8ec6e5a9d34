"""SIGTERM to a real `monoduty worker` during a burst: in-flight sends finish, nothing is lost or doubled."""

from __future__ import annotations

import asyncio
import signal

import asyncpg
import pytest
from arq.connections import ArqRedis

from engine.settings import NtfySettings, Settings
from tests.support.factories import Account, counts, make_client, run_worker
from tests.support.processes import ROOT, dies_with_us, monoduty_argv, monoduty_env, wait_until
from tests.support.providers import FakeProviders, closed_port
from tests.support.services import Services

ALERTS = 20
TOPICS = ["burst-a", "burst-b"]


def worker_env(services: Services, fake: FakeProviders) -> dict[str, str]:
    return monoduty_env(
        MONODUTY_DATABASE_URL=services.database_url,
        MONODUTY_REDIS_URL=services.redis_url,
        MONODUTY_NTFY_URL=fake.url,
        MONODUTY_WORKER_CONCURRENCY="4",
        MONODUTY_WORKER_POLL_DELAY="0.01",
        MONODUTY_SHUTDOWN_GRACE="15",
        MONODUTY_LOG_FORMAT="json",
    )


async def test_sigterm_lets_sends_finish_and_leaves_the_rest_for_another_worker(
    services: Services,
    redis: ArqRedis,
    pool: asyncpg.Pool,
    account: Account,
    fake_providers: FakeProviders,
) -> None:
    settings = Settings(
        database_url=services.database_url,
        redis_url=services.redis_url,
        public_url="http://monoduty.test",
        require_https=False,
        ntfy=NtfySettings(fake_providers.url),
        worker_poll_delay=0.01,
    )
    fake_providers.delay = 0.4  # a slow provider: every send is in flight for a while
    client = await make_client(settings)
    try:
        resp = await client.post(
            "/api/webhooks",
            json={"name": "burst", "notificationTypes": ["PUSH_NOTIF"], "targetChannels": {"push": TOPICS}},
            headers=account.headers,
        )
        assert resp.status == 201, await resp.text()
        webhook = (await resp.json())["webhook"]
        path = webhook["webhook_url"].removeprefix("http://monoduty.test")
        for n in range(ALERTS):
            resp = await client.post(path, json={"title": f"alert {n}", "message": f"message {n}"})
            assert resp.status == 202

        worker = await asyncio.create_subprocess_exec(
            *monoduty_argv("worker"),
            cwd=ROOT,
            env=worker_env(services, fake_providers),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            preexec_fn=dies_with_us(),
        )

        async def sends_in_flight() -> bool:
            return len(fake_providers.requests) >= 2

        await wait_until(sends_in_flight, "the worker to start sending", timeout=30)
        worker.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(worker.communicate(), 30)
        assert worker.returncode == 0, stderr.decode()[-2000:]

        async with pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT d.status, d.attempts FROM deliveries d JOIN alerts a ON a.id = d.alert_id"
                " WHERE a.webhook_id = $1",
                webhook["id"],
            )
        started = [r for r in rows if r["attempts"] > 0]
        # Every send that had begun was allowed to finish: none was cut off and left to re-run.
        assert started and all(r["status"] == "delivered" for r in started)
        # It stopped taking jobs: most of the burst is still waiting for another worker.
        assert len(started) < ALERTS * len(TOPICS)
        sent_before = len(fake_providers.requests)
        assert sent_before == len(started)

        fake_providers.delay = 0.0
        await run_worker(settings)

        resp = await client.get(f"/api/webhooks/{webhook['id']}", headers=account.headers)
        statistics = (await resp.json())["webhook"]["statistics"]
    finally:
        await client.close()
    assert statistics == counts(ALERTS, ALERTS, 0)
    async with pool.acquire() as conn:
        attempts = await conn.fetch(
            "SELECT d.attempts FROM deliveries d JOIN alerts a ON a.id = d.alert_id WHERE a.webhook_id = $1",
            webhook["id"],
        )
    assert len(attempts) == ALERTS * len(TOPICS)
    assert all(r["attempts"] == 1 for r in attempts)  # nothing was sent twice
    sent = sorted((r.target, r.body) for r in fake_providers.requests)
    assert len(sent) == ALERTS * len(TOPICS) == len(set(sent))


@pytest.mark.slow  # over 5 s: run with the slow tests
async def test_sigterm_to_the_api_finishes_a_request_in_flight(
    services: Services, redis: ArqRedis, settings: Settings, account: Account
) -> None:
    """A request fully sent when SIGTERM comes is answered and its alert queued. One whose body is
    still arriving cannot finish (aiohttp stops reading at shutdown): it must get no 202, rather
    than the 202 of an alert cut to the bytes that had arrived."""
    client = await make_client(settings)
    try:
        resp = await client.post(
            "/api/webhooks",
            json={"name": "graceful", "notificationTypes": ["PUSH_NOTIF"], "targetChannels": {"push": "t"}},
            headers=account.headers,
        )
        path = (await resp.json())["webhook"]["webhook_url"].removeprefix("http://monoduty.test")
    finally:
        await client.close()
    port = closed_port()
    env = monoduty_env(
        MONODUTY_DATABASE_URL=services.database_url,
        MONODUTY_REDIS_URL=services.redis_url,
        MONODUTY_REQUIRE_HTTPS="off",
        MONODUTY_SHUTDOWN_GRACE="3",
    )
    api = await asyncio.create_subprocess_exec(
        *monoduty_argv("api", "--host", "127.0.0.1", "--port", str(port)),
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        preexec_fn=dies_with_us(),
    )

    async def listening() -> bool:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            return False
        writer.close()
        return True

    async def send(body: bytes, sent: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        head = f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        writer.write(f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body[:sent])
        await writer.drain()
        return reader, writer

    try:
        await wait_until(listening, "the API to listen", timeout=30)
        whole = b'{"title": "sent while the API stops"}'
        half = b'{"title": "still arriving as the API stops"}'
        whole_reader, whole_writer = await send(whole, len(whole))
        half_reader, half_writer = await send(half, 10)
        api.send_signal(signal.SIGTERM)

        async def stopped_listening() -> bool:
            return not await listening()

        await wait_until(stopped_listening, "the API to stop accepting connections", timeout=15)
        # The whole request is answered 202 when its handler had started before the signal; one
        # that was still only bytes in a buffer may be closed unanswered (aiohttp's shutdown), so
        # the sender retries it. Either way nothing answered 202 is lost, and nothing else is queued.
        whole_status = await asyncio.wait_for(whole_reader.readline(), 15)
        assert whole_status == b"" or whole_status.startswith(b"HTTP/1.1 202"), whole_status
        half_writer.write(half[10:])  # too late: the API no longer reads
        await half_writer.drain()
        half_status = await asyncio.wait_for(half_reader.readline(), 15)
        assert not half_status.startswith(b"HTTP/1.1 202"), half_status
        for writer in (whole_writer, half_writer):
            writer.close()
        await asyncio.wait_for(api.wait(), 30)
        assert api.returncode == 0
        accepted = int(whole_status.startswith(b"HTTP/1.1 202"))
        assert await redis.zcard(settings.queue_name) == accepted  # every 202 queued, nothing else
    finally:
        if api.returncode is None:
            api.kill()
            await api.wait()
