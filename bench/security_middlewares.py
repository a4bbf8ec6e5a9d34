"""Rough per-request cost of the perimeter middlewares (HTTPS check and the Redis rate limit).

Run: bench/run security_middlewares (MONODUTY_TEST_* servers, or embedded ones)
Serves the full app and the same app without the HTTPS and rate-limit middlewares side by side,
sends GET /api/auth/me to each in turn (API key, then session cookie), and prints the medians.
Alternating the two keeps a busy machine's noise out of the difference.
"""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid

from aiohttp.test_utils import TestClient, TestServer

import api.app
from api import security
from engine import db
from engine.auth.accounts import set_password
from engine.auth.api_keys import create_api_key
from engine.auth.users import create_user
from engine.settings import RateLimit, Settings
from tests.support.services import Services, provision

N = 2000
PASSWORD = "bench password 123"


async def once(client: TestClient, headers: dict[str, str]) -> float:
    start = time.perf_counter()
    resp = await client.get("/api/auth/me", headers=headers)
    await resp.read()
    assert resp.status == 200, resp.status
    return time.perf_counter() - start


async def start(settings: Settings, *, bare: bool) -> TestClient:
    app = api.app.create_app(settings)
    if bare:
        app.middlewares.remove(security.https_middleware)  # type: ignore[attr-defined]
        app.middlewares.remove(security.ratelimit_middleware)  # type: ignore[attr-defined]
    client = TestClient(TestServer(app))
    await client.start_server()
    return client


async def main(services: Services) -> None:
    settings = Settings(
        database_url=services.database_url,
        redis_url=services.redis_url,
        require_https=False,
        rate_limit_api=RateLimit(10**9, 60),
    )
    assert settings.database_url
    conn = await db.connect(settings.database_url)
    user = await create_user(conn, f"bench-{uuid.uuid4().hex[:8]}@example.com")
    await set_password(conn, user.id, PASSWORD)
    key, _ = await create_api_key(conn, user.id, "bench")
    await conn.close()
    full, bare = await start(settings, bare=False), await start(settings, bare=True)
    try:
        for client in (full, bare):
            await client.post("/api/auth/login", json={"email": user.email, "password": PASSWORD})
        for kind, headers in (("api key", {"Authorization": f"Bearer {key}"}), ("session", {})):
            samples: dict[str, list[float]] = {"full": [], "bare": []}
            for n in range(N):  # alternate which goes first, too
                pair = [("full", full), ("bare", bare)][:: 1 if n % 2 else -1]
                for name, client in pair:
                    samples[name].append(await once(client, headers))
            f, b = (statistics.median(samples[k]) * 1000 for k in ("full", "bare"))
            print(f"{kind:8} full {f:.3f} ms  without https+ratelimit {b:.3f} ms  added {f - b:+.3f} ms")
    finally:
        await full.close()
        await bare.close()


if __name__ == "__main__":
    with provision() as provided:  # outside the event loop: it runs its own set-up loop
        asyncio.run(main(provided))
