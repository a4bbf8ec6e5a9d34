"""What compressed bodies cost the API's event loop: gzip bombs against a real `monoduty api`.

Run: bench/run gzip_bomb [--bombs 8] [--inflated-mib 250]
Starts `monoduty api` (MONODUTY_TEST_* servers, or embedded ones), makes a user, a key and a
webhook, then for each target (an unknown token, a known token, /api/webhooks without a key)
sends BOMBS gzip bodies at once, each inflating to INFLATED_MIB MiB of zeros, while /healthz
is asked every 10 ms. It prints the answers, how long they took, and the slowest /healthz
answer during the burst against the slowest one when idle: a stalled loop shows as the ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import tempfile
import time
import uuid
from pathlib import Path

import aiohttp

from engine import db
from engine.auth.api_keys import create_api_key
from engine.auth.users import create_user
from tests.support.processes import ApiProcess
from tests.support.services import Services, provision


def bomb(inflated_mib: int) -> bytes:
    return gzip.compress(b"\0" * (inflated_mib * 1024 * 1024), compresslevel=9)


async def health_probe(session: aiohttp.ClientSession, url: str, stop: asyncio.Event) -> float:
    """The slowest /healthz answer until ``stop`` is set."""
    worst = 0.0
    while not stop.is_set():
        start = time.perf_counter()
        async with session.get(f"{url}/healthz") as resp:
            await resp.read()
        worst = max(worst, time.perf_counter() - start)
        await asyncio.sleep(0.01)
    return worst


async def burst(session: aiohttp.ClientSession, url: str, body: bytes, n: int) -> list[tuple[int, float]]:
    async def one() -> tuple[int, float]:
        start = time.perf_counter()
        headers = {"Content-Encoding": "gzip", "Content-Type": "application/json"}
        async with session.post(url, data=body, headers=headers) as resp:
            await resp.read()
            return resp.status, time.perf_counter() - start

    return await asyncio.gather(*(one() for _ in range(n)))


async def run(services: Services, bombs: int, inflated_mib: int) -> None:
    assert services.database_url
    conn = await db.connect(services.database_url)
    user = await create_user(conn, f"bench-{uuid.uuid4().hex[:8]}@example.com")
    key, _ = await create_api_key(conn, user.id, "bench")
    await conn.close()
    body = bomb(inflated_mib)
    print(f"bomb: {len(body) / 1024:.0f} KiB gzip inflating to {inflated_mib} MiB; {bombs} at once")
    with tempfile.TemporaryDirectory() as tmp:
        env = {"MONODUTY_REQUIRE_HTTPS": "off", "MONODUTY_NTFY_URL": "http://127.0.0.1:9"}
        server = ApiProcess(services, Path(tmp) / "api.log", **env)
        try:
            auth = {"Authorization": f"Bearer {key}"}
            async with aiohttp.ClientSession() as session:
                hook = {"name": "bench", "notificationTypes": ["PUSH_NOTIF"], "targetChannels": {"push": "b"}}
                async with session.post(f"{server.url}/api/webhooks", json=hook, headers=auth) as resp:
                    token = (await resp.json())["webhook"]["webhook_url"].rsplit("/", 1)[1]
                targets = {
                    "unknown token": f"{server.url}/{'x' * 40}",
                    "known token": f"{server.url}/{token}",
                    "/api/webhooks, no key": f"{server.url}/api/webhooks",
                }
                stop = asyncio.Event()
                idle = asyncio.create_task(health_probe(session, server.url, stop))
                await asyncio.sleep(1)
                stop.set()
                idle_worst = await idle
                print(f"/healthz when idle: slowest {idle_worst * 1000:.1f} ms")
                for name, url in targets.items():
                    stop = asyncio.Event()
                    probe = asyncio.create_task(health_probe(session, server.url, stop))
                    answers = await burst(session, url, body, bombs)
                    # the loop may still be inflating after the answers: keep probing a while
                    await asyncio.sleep(1)
                    stop.set()
                    worst = await probe
                    statuses = sorted({status for status, _ in answers})
                    slowest = max(took for _, took in answers)
                    print(
                        f"{name}: answers {statuses} within {slowest * 1000:.0f} ms; "
                        f"/healthz slowest {worst * 1000:.0f} ms ({worst / idle_worst:.0f}x idle)"
                    )
        finally:
            server.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bombs", type=int, default=8)
    parser.add_argument("--inflated-mib", type=int, default=250)
    args = parser.parse_args()
    with provision() as services:
        asyncio.run(run(services, args.bombs, args.inflated_mib))


if __name__ == "__main__":
    main()
