"""The dashboard over HTTP for tests: ``signed_in(client, pool, account)`` signs the account in
through the sign-in form and returns the page's CSRF token; ``row_ids(page)`` the incidents a list
page shows, in order; ``insert_incidents(pool, webhook_id, severities)`` open incidents stored as
engine.incidents writes them (many at once, without a worker)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import asyncpg
from aiohttp.test_utils import TestClient

from engine.auth.accounts import set_password
from tests.support.factories import Account

PASSWORD = "a password long enough"
ROW = re.compile(r'<tr class="row-\w+" id="incident-([0-9a-f-]{36})">')
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


async def signed_in(client: TestClient, pool: asyncpg.Pool, account: Account) -> str:
    async with pool.acquire() as conn:
        await set_password(conn, account.user.id, PASSWORD)
    data = {"email": account.user.email, "password": PASSWORD, "next": "/"}
    resp = await client.post("/sign-in", data=data, allow_redirects=False)
    assert resp.status == 303, await resp.text()
    match = CSRF.search(await (await client.get("/")).text())
    assert match
    return match.group(1)


def row_ids(page: str) -> list[str]:
    return ROW.findall(page)


async def insert_incidents(
    pool: asyncpg.Pool,
    webhook_id: str,
    severities: Sequence[str],
    *,
    status: str = "triggered",
    title: str = "Incident",
) -> list[str]:
    """One open incident per severity given, the last one newest; their ids in that order."""
    start = datetime.now(UTC) - timedelta(hours=1)
    async with pool.acquire() as conn:
        team_id, owner, first = await conn.fetchrow(
            """SELECT w.team_id, w.user_id, t.incident_seq + 1
               FROM webhooks w JOIN teams t ON t.id = w.team_id WHERE w.id = $1""",
            uuid.UUID(webhook_id),
        )
        rows = [
            (uuid.uuid4(), owner, uuid.UUID(webhook_id), team_id, first + n, f"{title} {first + n}", severity,
             status, f"key-{uuid.uuid4().hex}", start + timedelta(seconds=n))
            for n, severity in enumerate(severities)
        ]  # fmt: skip
        await conn.executemany(
            """INSERT INTO incidents (id, user_id, webhook_id, team_id, number, title, severity, status,
                   dedup_key, alert_count, first_alert_at, last_alert_at, created_at)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 1, $10, $10, $10)""",
            rows,
        )
        # The team's next number follows them, as if the engine had numbered them.
        last = first + len(rows) - 1
        await conn.execute(
            "UPDATE teams SET incident_seq = greatest(incident_seq, $2) WHERE id = $1", team_id, last
        )
    return [str(row[0]) for row in rows]
