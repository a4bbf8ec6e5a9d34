"""The dashboard's incident list with 1,000 open incidents: how long the server takes to answer.

Run: bench/run dashboard_incidents [--incidents 1000] [--requests 200]
(MONODUTY_TEST_* servers, or embedded ones.) One user with 1,000 open incidents (a third
triggered) over 10 webhooks, stored as the engine writes them, then ANALYZE. The app runs in this
process on a local port; each request is timed from send to the last byte read, so the figure is
the server's render time plus a loopback round trip (an upper bound). Measured, one after another:
the home page (a page of 50), the htmx fragment a live refresh asks for, a filtered list, and the
second page (a cursor). The issue's budget: under 150 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import time
import uuid

import asyncpg
from aiohttp.test_utils import TestClient, TestServer

import api.app
from engine import db, webhooks
from engine.auth.accounts import set_password
from engine.auth.users import create_user
from engine.settings import RateLimit, Settings
from tests.support.dashboard import insert_incidents
from tests.support.services import Services, provision

PASSWORD = "bench password 123"
BUDGET_MS = 150.0


async def timed(client: TestClient, path: str, headers: dict[str, str] | None = None) -> float:
    start = time.perf_counter()
    resp = await client.get(path, headers=headers or {})
    body = await resp.read()
    elapsed = time.perf_counter() - start
    assert resp.status == 200, (resp.status, body[:300])
    return elapsed * 1000


async def main(services: Services, incidents: int, requests: int) -> None:
    settings = Settings(
        database_url=services.database_url,
        redis_url=services.redis_url,
        require_https=False,
        rate_limit_api=RateLimit(10**9, 60),
    )
    assert settings.database_url
    client = TestClient(TestServer(api.app.create_app(settings)))
    await client.start_server()  # the app's start-up applies schema.sql
    conn = await db.connect(settings.database_url)
    user = await create_user(conn, f"bench-{uuid.uuid4().hex[:8]}@example.com")
    await set_password(conn, user.id, PASSWORD)
    hooks = [
        await webhooks.create_webhook(
            conn, user, webhooks.WebhookInput(name=f"Service {n}", notification_types=["EMAIL"]), {"EMAIL"}
        )
        for n in range(10)
    ]
    await conn.close()
    pool = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=2)
    severities = ["critical", "error", "warning", "info"]
    per_hook = incidents // len(hooks)
    for n, hook in enumerate(hooks):
        chosen = [severities[(n + i) % 4] for i in range(per_hook)]
        ids = await insert_incidents(pool, str(hook["id"]), chosen, title=f"Latency on service {n}")
        async with pool.acquire() as c:  # two thirds acknowledged, so a third is triggered
            await c.execute(
                "UPDATE incidents SET status = 'acknowledged', acknowledged_at = now()"
                " WHERE id = ANY($1::uuid[])",
                [uuid.UUID(i) for i in ids if int(i[-1], 16) % 3],
            )
    async with pool.acquire() as c:
        await c.execute("ANALYZE incidents")
        await c.execute("ANALYZE webhooks")
        open_count = await c.fetchval(
            "SELECT count(*) FROM incidents WHERE user_id = $1 AND status <> 'resolved'", user.id
        )
    await pool.close()
    try:
        resp = await client.post("/sign-in", data={"email": user.email, "password": PASSWORD, "next": "/"})
        first = await resp.text()
        assert "Older incidents" in first
        cursor = re.search(r'<a href="(/\?cursor=[^"]+)">Older incidents</a>', first)
        assert cursor
        second = cursor.group(1).replace("&amp;", "&")
        cases = {
            "home page (50 of the open ones)": ("/", None),
            "live refresh (htmx fragment)": ("/", {"HX-Request": "true", "HX-Target": "incident-list"}),
            "filtered (severity + webhook)": (f"/?severity=critical&webhook={hooks[0]['id']}", None),
            "second page (cursor)": (second, None),
        }
        for path, headers in cases.values():  # warm-up: templates compiled, plans cached
            for _ in range(10):
                await timed(client, path, headers)
        print(f"{open_count} open incidents, {len(hooks)} webhooks; {requests} requests each")
        for name, (path, headers) in cases.items():
            samples = sorted([await timed(client, path, headers) for _ in range(requests)])
            median, p95 = statistics.median(samples), samples[int(len(samples) * 0.95) - 1]
            verdict = "ok" if p95 < BUDGET_MS else "OVER BUDGET"
            print(
                f"{name:34} median {median:6.1f} ms  p95 {p95:6.1f} ms  max {samples[-1]:6.1f} ms  {verdict}"
            )
    finally:
        await client.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--incidents", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    with provision() as provided:
        asyncio.run(main(provided, args.incidents, args.requests))
