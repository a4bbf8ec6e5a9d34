"""Heartbeats through the API, and the workers' sweep run at will.

- ``SETTINGS``: what the heartbeat tests change in the settings (periods and graces of a second,
  a sweep every second);
- ``new_heartbeat(client, account, webhook, **body)``: one through the API, as it answers (by
  default every 2 s with a grace of 1 s);
- ``ping(client, heartbeat, "/start" | "/fail" | "", ...)``: a ping to its URL;
- ``heartbeat_incidents(pool, heartbeat)``: its incidents (its own dedup key), oldest first;
- ``Sweeper(settings, pool, redis, clock)``: ``await sweeper()`` is one tick of the workers' cron
  job (workers.heartbeats.check_heartbeats), on that clock;
- ``forget_heartbeats(pool)``: delete every heartbeat, so that no later test's worker sweeps one.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient
from arq.connections import ArqRedis

from engine.clock import Clock
from engine.heartbeats.alerts import heartbeat_key
from engine.settings import Settings
from tests.support.factories import Account
from workers.heartbeats import check_heartbeats

SETTINGS = {"min_heartbeat_period": 1, "heartbeat_sweep_seconds": 1}


async def new_heartbeat(
    client: TestClient, account: Account, webhook: dict[str, Any], **body: Any
) -> dict[str, Any]:
    wanted = {"name": "nightly backup", **({} if "cron" in body else {"period": "2s"}), "grace": "1s", **body}
    resp = await client.post(
        f"/api/webhooks/{webhook['id']}/heartbeats", json=wanted, headers=account.headers
    )
    assert resp.status == 201, await resp.text()
    return (await resp.json())["heartbeat"]


def ping_path(heartbeat: dict[str, Any], suffix: str = "") -> str:
    return heartbeat["ping_url"].removeprefix("http://monoduty.test") + suffix


async def ping(
    client: TestClient, heartbeat: dict[str, Any], suffix: str = "", *, method: str = "POST", **kwargs: Any
) -> ClientResponse:
    resp = await client.request(method, ping_path(heartbeat, suffix), **kwargs)
    assert resp.status == 200, await resp.text()
    return resp


async def read(client: TestClient, account: Account, heartbeat: dict[str, Any]) -> dict[str, Any]:
    """The heartbeat as GET shows it, with its pings."""
    resp = await client.get(
        f"/api/webhooks/{heartbeat['webhook_id']}/heartbeats/{heartbeat['id']}", headers=account.headers
    )
    assert resp.status == 200, await resp.text()
    return (await resp.json())["heartbeat"]


async def heartbeat_incidents(pool: asyncpg.Pool, heartbeat: dict[str, Any]) -> list[asyncpg.Record]:
    async with pool.acquire() as conn:
        return await conn.fetch(
            "SELECT * FROM incidents WHERE webhook_id = $1 AND dedup_key = $2 ORDER BY created_at, number",
            uuid.UUID(heartbeat["webhook_id"]),
            heartbeat_key(uuid.UUID(heartbeat["id"])),
        )


@dataclass
class Sweeper:
    """One worker's heartbeat cron job, run when the test says: ``await sweeper()``."""

    settings: Settings
    pool: asyncpg.Pool
    redis: ArqRedis
    clock: Clock

    async def __call__(self) -> int:
        ctx = {"settings": self.settings, "pool": self.pool, "redis": self.redis, "clock": self.clock}
        return await check_heartbeats(ctx)  # type: ignore[arg-type]


async def forget_heartbeats(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        await conn.execute("DELETE FROM heartbeats")
