"""Pending deliveries that no job is making progress on: their deliver job was lost with Redis data
(a FLUSHALL, the AOF ``everysec`` window, a failover) and nothing else would ever queue them again.

PostgreSQL is the truth of what is owed. A pending delivery whose last sign of life (made, last
attempted, next attempt due) is older than ``idle`` should have been attempted by now: a job that
still exists holds it in Redis (re-queueing it is then a no-op, engine.queue.requeue_deliveries),
and one running without its keys (flushed mid-run, or the first attempt inside process_alert) ended
by arq's job timeout, which ``idle`` exceeds. ``take`` claims such rows with SKIP LOCKED and marks
them (``next_attempt_at``: the re-queue is the next attempt), so workers sweeping at once take each
once per ``idle``. A delivery taken mid-send (its worker died: ``sending_since`` still set) is
re-queued too, and its next attempt is recorded possibly duplicated (engine.alerts.lifecycle).
"""

from __future__ import annotations

import uuid
from datetime import datetime

from engine import db

# A delivery made longer ago than arq keeps a job (a day, engine.queue: its expiry) is past what any
# job of it would have sent: one stranded before this sweep existed is not sent days late.
MAX_AGE_SECONDS = 24 * 3600.0

# greatest() skips NULLs: a delivery never attempted counts from when it was made. The sweeper's
# clock is the database's corrected (engine.clock.DatabaseClock), but one stepped ahead since its
# last measurement would take a first attempt still running in process_alert (no job of its id)
# for stranded, and send it again: now() bounds it, so a clock ahead never sweeps early (one
# behind sweeps late). The mark is the time the cutoff was read on.
TAKE_IDLE = """
UPDATE deliveries SET next_attempt_at = least($1, now())
WHERE id IN (
    SELECT id FROM deliveries
    WHERE status = 'pending'
        AND greatest(created_at, last_attempt_at, next_attempt_at)
            < least($1, now()) - make_interval(secs => $2)
        AND created_at > least($1, now()) - make_interval(secs => $4)
    ORDER BY created_at
    LIMIT $3
    FOR UPDATE SKIP LOCKED
)
RETURNING id
"""


async def take(conn: db.Connection, now: datetime, idle: float, limit: int) -> list[uuid.UUID]:
    """Claim up to ``limit`` pending deliveries idle for more than ``idle`` seconds at ``now`` (or
    at the database's now, if earlier)."""
    rows = await conn.fetch(TAKE_IDLE, now, idle, limit, MAX_AGE_SECONDS)
    return [r["id"] for r in rows]
