"""Accept throughput behind Redis Sentinel with a replica (each 202 waits for the replica) against
the same primary by its plain URL.

One primary, one replica and one redis-sentinel of this run's own; a real ``monoduty api`` on
``redis+sentinel://`` (every accepted alert confirmed on the replica with ``WAIT``,
engine.replicated) and one on the primary's ``redis://`` (no replica wait) take turns, for
``--rounds`` rounds so that drift in a shared machine's load hits both alike. ``--alerts`` alerts
to one webhook with ``--concurrency`` requests in flight; no worker runs: this measures what a
sender sees. The ratio of the medians is the figure.

    python -m bench.sentinel_wait [--alerts 3000] [--concurrency 32] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from bench.redis_fsync import accept_rate, new_webhook_token
from tests.support.faults import RedisSentinel, RedisServer
from tests.support.processes import ApiProcess, wait_for
from tests.support.services import Services, provision

SERVICE = "monoduty-bench"


def one_round(
    services: Services, folder: Path, redis_url: str, token: str, args: argparse.Namespace
) -> float:
    api = ApiProcess(
        Services(services.database_url, redis_url),
        folder / f"api-{time.monotonic_ns()}.log",
        MONODUTY_REQUIRE_HTTPS="off",
        MONODUTY_RATE_LIMIT_INBOUND="1000000000/minute",
    )
    try:
        asyncio.run(accept_rate(f"{api.url}/{token}", args.concurrency * 4, args.concurrency))  # warm up
        return asyncio.run(accept_rate(f"{api.url}/{token}", args.alerts, args.concurrency))
    finally:
        api.stop()


def main(args: argparse.Namespace) -> None:
    with provision() as services, tempfile.TemporaryDirectory(prefix="bench-sentinel-") as tmp:
        folder = Path(tmp)
        primary = RedisServer(folder / "primary")
        primary.start()
        replica = RedisServer(folder / "replica", replica_of=primary.port)
        replica.start()
        sentinel = RedisSentinel(folder / "sentinel", primary, service=SERVICE)
        try:
            sentinel.start()
            wait_for(lambda: sentinel.replicas_known() == 1, "the sentinel to see the replica", timeout=30)
            urls = {"plain": primary.url, "sentinel": RedisSentinel.url([sentinel])}
            token = asyncio.run(new_webhook_token(services.database_url))
            rates: dict[str, list[float]] = {name: [] for name in urls}
            for _ in range(args.rounds):
                for name, url in urls.items():
                    rates[name].append(one_round(services, folder, url, token, args))
        finally:
            sentinel.stop()
            replica.stop()
            primary.stop()
    print(
        f"{args.alerts} alerts to one webhook, {args.concurrency} in flight, one monoduty api process, "
        f"a primary and a replica on loopback ({args.rounds} rounds, alternating)"
    )
    for name, values in rates.items():
        shown = ", ".join(f"{v:.0f}" for v in values)
        print(f"{name:<9} median {statistics.median(values):7.1f} accepted/s   (rounds: {shown})")
    ratio = statistics.median(rates["sentinel"]) / statistics.median(rates["plain"])
    print(f"ratio: behind Sentinel (WAIT for the replica) accepts {ratio:.2f}x the 202s per second of plain")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alerts", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    main(parser.parse_args())
