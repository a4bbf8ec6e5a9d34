"""Benchmark: the unread count with a million notifications, against a bare round trip.

    bench/run notifications_unread [--rows 1000000] [--queries 2000]

On a scratch database (tests.services.provision: MONODUTY_TEST_* servers or embedded ones), fills
``notifications`` with ``--rows`` rows spread over 1,000 users (10 % unread) plus one heavy user
with 50,000 rows of which 500 are unread, VACUUM ANALYZEs, then times, in the same run:
``SELECT 1`` (the round-trip floor), the unread count of a typical and of the heavy user, and the
same count with the partial index dropped (what the query would cost without it).
Reports the median and p95 per query and the ratio to the ``SELECT 1`` median.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid

import asyncpg

from engine.notifications import UNREAD_COUNT
from tests.support.services import provision

FILL = """
INSERT INTO notifications (id, user_id, kind, title, read_at, created_at)
SELECT gen_random_uuid(), u.id, 'alert_received', 'bench',
    CASE WHEN n % 10 = 0 THEN NULL ELSE now() END, now() - make_interval(secs => n)
FROM (SELECT id FROM users WHERE email LIKE 'unread-bench%') u, generate_series(1, $1::int) n
ORDER BY u.id, n
"""
HEAVY = """
INSERT INTO notifications (id, user_id, kind, title, read_at, created_at)
SELECT gen_random_uuid(), $1, 'alert_received', 'heavy',
    CASE WHEN n % 100 = 0 THEN NULL ELSE now() END, now() - make_interval(secs => n)
FROM generate_series(1, $2::int) n
"""


async def timed(conn: asyncpg.Connection, sql: str, args: tuple, queries: int) -> list[float]:
    for _ in range(20):  # warm the cache and the prepared statement
        await conn.fetchval(sql, *args)
    samples = []
    for _ in range(queries):
        started = time.perf_counter()
        await conn.fetchval(sql, *args)
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def line(name: str, samples: list[float], floor: float) -> str:
    median = statistics.median(samples)
    p95 = statistics.quantiles(samples, n=20)[-1]
    return f"{name:<44} median {median:8.3f} ms   p95 {p95:8.3f} ms   x{median / floor:6.1f} of SELECT 1"


async def plan(conn: asyncpg.Connection, user_id: uuid.UUID) -> str:
    rows = await conn.fetch(f"EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) {UNREAD_COUNT}", user_id)
    return "\n".join("    " + r[0] for r in rows)


async def fill(
    conn: asyncpg.Connection, rows: int, heavy: uuid.UUID | None = None, heavy_rows: int = 50_000
) -> tuple[uuid.UUID, uuid.UUID]:
    """``rows`` notifications over 1,000 users of their own (10 % unread), then ``heavy_rows`` of
    which 1 % unread for ``heavy`` (a new user when None), and VACUUM ANALYZE: (a typical user, the
    heavy one).
    bench/suite.py scenario 6 fills its database with this too."""
    users = max(1, rows // 1000)
    await conn.execute(
        "INSERT INTO users (id, email) SELECT gen_random_uuid(), 'unread-bench' || n || '@example.com' "
        "FROM generate_series(1, $1::int) n",
        users,
    )
    await conn.execute(FILL, rows // users)
    typical = await conn.fetchval("SELECT id FROM users WHERE email = 'unread-bench1@example.com'")
    if heavy is None:
        heavy = uuid.uuid4()
        await conn.execute("INSERT INTO users (id, email) VALUES ($1, 'heavy@example.com')", heavy)
    await conn.execute(HEAVY, heavy, heavy_rows)
    await conn.execute("VACUUM ANALYZE notifications")
    return typical, heavy


async def main(url: str, rows: int, queries: int) -> None:
    """Fill the scratch database at ``url`` and time the queries."""
    conn = await asyncpg.connect(url)
    try:
        started = time.perf_counter()
        typical, heavy = await fill(conn, rows)
        total = await conn.fetchval("SELECT count(*) FROM notifications")
        took = time.perf_counter() - started
        users = await conn.fetchval("SELECT count(*) FROM users")
        print(f"{total:,} notifications for {users:,} users, filled in {took:.0f} s")

        floor_samples = await timed(conn, "SELECT 1", (), queries)
        floor = statistics.median(floor_samples)
        print(line("SELECT 1 (round trip)", floor_samples, floor))
        print(
            line(
                "unread count, typical user (100 unread)",
                await timed(conn, UNREAD_COUNT, (typical,), queries),
                floor,
            )
        )
        print(
            line(
                "unread count, heavy user (500 unread)",
                await timed(conn, UNREAD_COUNT, (heavy,), queries),
                floor,
            )
        )
        print("plan, heavy user:\n" + await plan(conn, heavy))

        await conn.execute("DROP INDEX notifications_unread_idx")
        await conn.execute("ANALYZE notifications")
        few = max(20, queries // 20)
        print(
            line(
                "without the partial index, heavy user",
                await timed(conn, UNREAD_COUNT, (heavy,), few),
                floor,
            )
        )
        print("plan without it, heavy user:\n" + await plan(conn, heavy))
    finally:
        await conn.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=2000)
    args = parser.parse_args()
    with provision() as services:  # outside the event loop: it runs its own set-up loop
        asyncio.run(main(services.database_url, args.rows, args.queries))
