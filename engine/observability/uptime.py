"""Uptime: one health sample a minute (written by a worker cron job), and percentages from them.

A sample covers one minute slot (``sampled_at`` is the start of the minute). The uptime over a
window is::

    operational samples / expected slots

where the expected slots are every minute of the window since the first sample ever taken (a
fresh install is not penalised for the time before it existed), the current minute counting only
once it is sampled. A minute with no sample counts as not operational: when Redis or every worker
is down, nothing records a sample, and such a gap must not read as 100 %. ``degraded`` minutes
are not operational either: an alerting service whose alerts wait is not fully up.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from engine import db
from engine.observability.status import Level

SAMPLE_SECONDS = 60
WINDOWS = {"last_24h": timedelta(hours=24), "last_7d": timedelta(days=7), "last_30d": timedelta(days=30)}
KEEP = timedelta(days=31)

INSERT_SAMPLE = """
INSERT INTO health_samples (sampled_at, status, details)
VALUES (date_trunc('minute', $1::timestamptz), $2, $3)
ON CONFLICT (sampled_at) DO NOTHING
"""
DELETE_OLD_SAMPLES = "DELETE FROM health_samples WHERE sampled_at < $1"
SELECT_FIRST_SAMPLE = "SELECT min(sampled_at) FROM health_samples"
COUNT_SAMPLES = """
SELECT count(*) AS samples, count(*) FILTER (WHERE status = $3) AS operational,
       coalesce(bool_or(sampled_at = $2), false) AS current_sampled
FROM health_samples
WHERE sampled_at >= $1 AND sampled_at <= $2
"""


def minute(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(second=0, microsecond=0)


async def record_sample(conn: db.Connection, status: dict[str, Any], now: datetime) -> bool:
    """Store the status of this minute (the first sample of a minute wins); prune old ones."""
    details = {"issues": status["issues"]}
    done = await conn.execute(INSERT_SAMPLE, now, str(status["status"]), details)
    await conn.execute(DELETE_OLD_SAMPLES, now - KEEP)
    return done.endswith(" 1")


async def window_uptime(
    conn: db.Connection, window: timedelta, now: datetime, first: datetime | None
) -> dict[str, Any]:
    """Uptime over the ``window`` ending at ``now``: percentage (None without samples) and counts."""
    current = minute(now)
    begin = current - window + timedelta(seconds=SAMPLE_SECONDS)
    if first is None:
        return {"percentage": None, "operational_samples": 0, "samples": 0, "expected_samples": 0}
    begin = max(begin, minute(first))
    row = await conn.fetchrow(COUNT_SAMPLES, begin, current, Level.OPERATIONAL.value)
    assert row is not None  # an aggregate: always one row
    expected = int((current - begin).total_seconds() // SAMPLE_SECONDS) + int(row["current_sampled"])
    expected = max(expected, row["samples"])
    percentage = round(100 * row["operational"] / expected, 3) if expected else None
    return {
        "percentage": percentage,
        "operational_samples": row["operational"],
        "samples": row["samples"],
        "expected_samples": expected,
    }


async def uptime(conn: db.Connection, now: datetime) -> dict[str, dict[str, Any]]:
    """Every window of ``WINDOWS``."""
    first = await conn.fetchval(SELECT_FIRST_SAMPLE)
    return {name: await window_uptime(conn, window, now, first) for name, window in WINDOWS.items()}
