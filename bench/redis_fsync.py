"""Accept throughput with Redis AOF ``appendfsync everysec`` against ``always``.

For each setting, a redis-server of this run's own (AOF on, data on this machine's disk) and a real
``monoduty api`` process on it; ``--alerts`` alerts are posted to one webhook with ``--concurrency``
requests in flight, and the 202s per second counted. No worker runs: this measures what a sender
sees. The settings alternate for ``--rounds`` rounds so that drift in a shared machine's load hits
both alike; the ratio of the medians is the figure.

    python -m bench.redis_fsync [--alerts 3000] [--concurrency 32] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import aiohttp

from engine import db
from engine.auth.users import create_user
from engine.webhooks import WebhookInput, create_webhook
from tests.support.faults import AppendFsync, RedisServer
from tests.support.processes import ApiProcess
from tests.support.services import Services, provision


async def new_webhook_token(database_url: str) -> str:
    pool = await db.create_pool(database_url)
    try:
        async with pool.acquire() as conn:
            user = await create_user(conn, f"bench-{uuid.uuid4().hex[:8]}@example.com")
            body = WebhookInput(
                name="bench", notification_types=["EMAIL"], target_channels={"email": "a@b.test"}
            )
            webhook = await create_webhook(conn, user, body, {"EMAIL"})
            return str(webhook["token"])
    finally:
        await pool.close()


async def accept_rate(url: str, alerts: int, concurrency: int) -> float:
    """Alerts answered 202 per second."""
    todo = iter(range(alerts))
    accepted = 0

    async def sender(session: aiohttp.ClientSession) -> None:
        nonlocal accepted
        for n in todo:
            async with session.post(url, json={"title": f"bench {n}"}) as resp:
                accepted += resp.status == 202
                await resp.read()

    async with aiohttp.ClientSession() as session:
        started = time.perf_counter()
        await asyncio.gather(*(sender(session) for _ in range(concurrency)))
        seconds = time.perf_counter() - started
    if accepted != alerts:
        raise RuntimeError(f"only {accepted} of {alerts} alerts were accepted")
    return alerts / seconds


def one_round(
    services: Services, folder: Path, fsync: AppendFsync, token: str, args: argparse.Namespace
) -> float:
    redis = RedisServer(folder / f"redis-{fsync}-{uuid.uuid4().hex[:6]}", aof=True, fsync=fsync)
    redis.start()
    api = ApiProcess(
        Services(services.database_url, redis.url),
        folder / f"api-{fsync}.log",
        MONODUTY_REQUIRE_HTTPS="off",
        MONODUTY_RATE_LIMIT_INBOUND="1000000000/minute",
    )
    try:
        asyncio.run(accept_rate(f"{api.url}/{token}", args.concurrency * 4, args.concurrency))  # warm up
        return asyncio.run(accept_rate(f"{api.url}/{token}", args.alerts, args.concurrency))
    finally:
        api.stop()
        redis.stop()


def main(args: argparse.Namespace) -> None:
    with provision() as services, tempfile.TemporaryDirectory(prefix="bench-fsync-", dir="/var/tmp") as tmp:
        token = asyncio.run(new_webhook_token(services.database_url))
        rates: dict[str, list[float]] = {"everysec": [], "always": []}
        for _ in range(args.rounds):
            for fsync in ("everysec", "always"):
                rates[fsync].append(one_round(services, Path(tmp), fsync, token, args))  # type: ignore[arg-type]
    print(
        f"{args.alerts} alerts to one webhook, {args.concurrency} in flight, one monoduty api process, "
        f"Redis AOF on {tmp.rsplit('/', 1)[0]} ({args.rounds} rounds, alternating)"
    )
    for fsync, values in rates.items():
        shown = ", ".join(f"{v:.0f}" for v in values)
        print(
            f"appendfsync {fsync:<9} median {statistics.median(values):7.1f} accepted/s   (rounds: {shown})"
        )
    ratio = statistics.median(rates["always"]) / statistics.median(rates["everysec"])
    print(f"ratio: always accepts {ratio:.2f}x the alerts per second of everysec")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alerts", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    main(parser.parse_args())
