"""Helpers for the Redis fault tests: settings and a webhook on a Redis the test owns, and senders.

- ``app_settings`` / ``settings_for``: Settings on a test-owned Redis, pushes to the fake ntfy.
- ``new_webhook``: a push webhook's inbound path; ``send``: one alert, asserted 202.
- ``delivered``: how many of the given alerts' deliveries are delivered.
- ``Sender``: monitoring systems posting all the time, re-posting after a 503, as they do.
- ``kill_clients``: reset every client connection of a Redis (``CLIENT KILL TYPE normal``).
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter

import aiohttp
import asyncpg
import redis as redis_sync
from aiohttp.test_utils import TestClient

from engine.settings import NtfySettings, RateLimit, Settings
from tests.support.factories import Account
from tests.support.faults import RedisServer
from tests.support.providers import FakeProviders
from tests.support.services import Services

TOPIC = "outage-topic"


def app_settings(services: Services, redis_url: str, fake: FakeProviders) -> Settings:
    return Settings(
        database_url=services.database_url,
        redis_url=redis_url,
        public_url="http://monoduty.test",
        require_https=False,
        ntfy=NtfySettings(fake.url),
        worker_poll_delay=0.01,
    )


async def new_webhook(client: TestClient, account: Account) -> str:
    """A push webhook; its inbound path."""
    resp = await client.post(
        "/api/webhooks",
        # dedupBy none: every accepted alert pages, as these tests count (a sender's re-post after a
        # 503 would otherwise join the incident of the copy Redis took before it died).
        json={
            "name": "outage",
            "notificationTypes": ["PUSH_NOTIF"],
            "targetChannels": {"push": TOPIC},
            "dedupBy": "none",
        },
        headers=account.headers,
    )
    assert resp.status == 201, await resp.text()
    return (await resp.json())["webhook"]["webhook_url"].removeprefix("http://monoduty.test")


async def send(client: TestClient, path: str, title: str) -> str:
    resp = await client.post(path, json={"title": title, "message": title})
    assert resp.status == 202, await resp.text()
    return (await resp.json())["alert_id"]


async def delivered(pool: asyncpg.Pool, alert_ids: list[str]) -> int:
    async with pool.acquire() as conn:
        return int(
            await conn.fetchval(
                "SELECT count(*) FROM deliveries WHERE alert_id = ANY($1::uuid[]) AND status = 'delivered'",
                [uuid.UUID(a) for a in alert_ids],
            )
        )


NEVER_RETRIEVED = "Task exception was never retrieved"


class Sender:
    """Monitoring systems posting alerts all the time; each alert is re-posted after a 503, as they do.

    ``accepted`` holds the alert ids answered 202, ``statuses`` every status seen (a client-side
    timeout counts as ``"timeout"``).
    """

    def __init__(self, client: TestClient, path: str, *, senders: int = 4, interval: float = 0.04) -> None:
        self.client = client
        self.path = path
        self.senders = senders
        self.interval = interval  # between one sender's alerts: 4 senders, ~100 alerts/s at most
        self.accepted: list[str] = []
        self.statuses: Counter[int | str] = Counter()
        self._tasks: list[asyncio.Task[None]] = []
        self._stop = asyncio.Event()

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._run(n)) for n in range(self.senders)]

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)

    async def cancel(self) -> None:
        """End at once (a test that failed midway)."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _run(self, sender: int) -> None:
        number = 0
        while not self._stop.is_set():
            number += 1
            title = f"sender {sender} alert {number}"
            while True:  # until this alert is accepted, or the test is over
                status = await self._post(title)
                if status == 202 or self._stop.is_set():
                    break
                await asyncio.sleep(self.interval)
            await asyncio.sleep(self.interval)

    async def _post(self, title: str) -> int | str:
        timeout = aiohttp.ClientTimeout(total=10)
        try:
            resp = await self.client.post(self.path, json={"title": title, "message": title}, timeout=timeout)
        except TimeoutError:
            self.statuses["timeout"] += 1
            return "timeout"
        except aiohttp.ClientError as exc:  # the API dropped the connection: the test will say so
            self.statuses[type(exc).__name__] += 1
            return type(exc).__name__
        self.statuses[resp.status] += 1
        body = await resp.json()
        if resp.status == 202:
            self.accepted.append(body["alert_id"])
        elif resp.status == 503:
            assert int(resp.headers["Retry-After"]) >= 1
        return resp.status


def settings_for(services: Services, server: RedisServer, fake: FakeProviders) -> Settings:
    settings = app_settings(services, server.url, fake)
    return settings.with_(rate_limit_inbound=RateLimit(1_000_000, 60))


def kill_clients(server: RedisServer) -> int:
    """Reset every client connection (the caller's own is skipped): a network blip, a proxy restart."""
    client = redis_sync.Redis.from_url(server.url, socket_timeout=5)
    try:
        return int(client.execute_command("CLIENT", "KILL", "TYPE", "normal"))
    finally:
        client.close()
