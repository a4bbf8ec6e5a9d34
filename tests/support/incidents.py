"""Reading what a webhook's incidents did: the pages and notices sent, and the incidents."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
from aiohttp.test_utils import TestClient

from tests.support.factories import Account


async def sent(pool: asyncpg.Pool, webhook: dict[str, Any]) -> list[tuple[str, str]]:
    """(channel, subject) of everything the outbox holds for the webhook, in order."""
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT o.channel, o.subject FROM outbox o JOIN alerts a ON a.id = o.alert_id"
            " WHERE a.webhook_id = $1 ORDER BY o.id",
            uuid.UUID(webhook["id"]),
        )
    return [(r["channel"], r["subject"]) for r in rows]


def pages_and_notices(outbox: list[tuple[str, str]]) -> tuple[list[str], list[str]]:
    """The channels of the pages, and of the RESOLVED notices, each sorted."""
    notices = sorted(channel for channel, subject in outbox if "RESOLVED #" in subject)
    pages = sorted(channel for channel, subject in outbox if "RESOLVED #" not in subject)
    return pages, notices


async def webhook_incidents(client: TestClient, account: Account, webhook: dict[str, Any]) -> list[dict]:
    """Every incident of the webhook, whatever its status, newest first, with alerts and timeline."""
    params = {"status": "all", "webhook": webhook["id"]}
    resp = await client.get("/api/incidents", params=params, headers=account.headers)
    assert resp.status == 200, await resp.text()
    found = []
    for item in (await resp.json())["incidents"]:
        detail = await client.get(f"/api/incidents/{item['id']}", headers=account.headers)
        found.append((await detail.json())["incident"])
    return found
