"""The workers' sweep: heartbeats whose grace ran out go down and open their incident, once.

Every MONODUTY_HEARTBEAT_SWEEP_SECONDS (5) one worker runs ``sweep`` (workers/heartbeats.py). It
claims the up heartbeats past ``due_at`` with ``FOR UPDATE SKIP LOCKED``, in batches, and in each
claim's transaction raises the "late" alert and marks the heartbeat down: two workers sweeping at
once never take one heartbeat, and one taken is down (due no more) once its transaction commits,
so a lateness is one incident. Heartbeats of a paused webhook are left until it is resumed.

Monoduty's own outage. A heartbeat is never reported late because Monoduty was away: while the
workers (or the whole service) are down, nobody sweeps, and its pings may have been refused too.
So every sweep first notes its time in ``heartbeat_sweeps``; when the one before it was longer ago
than a heartbeat's grace (and than ``AWAY_SWEEPS`` sweeps, so that a slow sweep is no outage), the
heartbeats that fell due in between get their grace again, counted from this sweep. One that
pings within it is up as if nothing happened; one that does not is reported late once, a grace
after the workers' return.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg

from engine import db
from engine.heartbeats import raised, store
from engine.heartbeats.state import State, on_sweep, timing_of

# No sweep for this many sweeps' time (and at least AWAY_MIN_SECONDS) is an outage, not a slow sweep.
AWAY_SWEEPS = 3
AWAY_MIN_SECONDS = 5
BATCH = 100  # heartbeats per claim (one transaction)
MAX_ROUNDS = 50  # claims per sweep: a longer backlog is finished by the next sweeps

KEPT_SWEEPS = 100
# The sweep noted last, by id (the order they were noted in, whatever their clocks said).
LAST_SWEEP = "SELECT swept_at FROM heartbeat_sweeps ORDER BY id DESC LIMIT 1"
NOTE_SWEEP = "INSERT INTO heartbeat_sweeps (swept_at) VALUES ($1) RETURNING id"
# Nothing here waits for a lock: a sweep stuck in its transaction must not stop the others.
TRIM_SWEEPS = """
DELETE FROM heartbeat_sweeps WHERE id IN (
    SELECT id FROM heartbeat_sweeps WHERE id <= $1::bigint - $2::bigint FOR UPDATE SKIP LOCKED)
"""
# The up heartbeats due between the last sweep ($2) and this one ($1), when that gap is longer than
# their grace and the outage floor ($3), and not restarted for this outage yet.
FELL_DUE_AWAY = """
status = 'up' AND due_at > $2 AND due_at <= $1
AND $1 - $2 > make_interval(secs => greatest(grace_seconds, $3::float8))
AND (grace_restarted_at IS NULL OR grace_restarted_at <= $2)
"""
RESTART_GRACE = f"""
UPDATE heartbeats SET due_at = $1 + make_interval(secs => grace_seconds), grace_restarted_at = $1
WHERE id IN (SELECT id FROM heartbeats WHERE {FELL_DUE_AWAY} FOR UPDATE SKIP LOCKED)
"""
STILL_TO_RESTART = f"SELECT count(*) FROM heartbeats WHERE {FELL_DUE_AWAY}"
CLAIM_DUE = f"""
SELECT {store.COLUMNS} FROM heartbeats h JOIN webhooks w ON w.id = h.webhook_id
WHERE h.status = 'up' AND h.due_at <= $1 AND w.status = 'ACTIVE'
ORDER BY h.due_at, h.id
LIMIT $2
FOR UPDATE OF h SKIP LOCKED
"""


@dataclass
class Swept:
    restarted: int = 0  # heartbeats whose grace restarted after an outage
    down: int = 0  # heartbeats that went down


async def sweep(pool: asyncpg.Pool, now: datetime, *, every: float) -> Swept:
    """One sweep at ``now`` (the worker's clock) of sweeps ``every`` so many seconds; the caller
    then queues what it raised (``raised.queue_owed``)."""
    swept = Swept()
    away = max(AWAY_SWEEPS * every, AWAY_MIN_SECONDS)
    async with pool.acquire() as conn:
        swept.restarted = await note_sweep(conn, now, away=away)
        for _ in range(MAX_ROUNDS):
            claimed, down = await _claim(conn, now)
            swept.down += down
            if claimed < BATCH:
                break
    return swept


async def note_sweep(conn: db.Connection, now: datetime, *, away: float) -> int:
    """Record this sweep; after an outage (no sweep for ``away`` seconds and a heartbeat's grace),
    restart the grace of what fell due in it; how many.

    A heartbeat held locked (a ping being stored, a sweep stuck in its transaction) is skipped,
    not waited for, and this sweep is then not recorded: the next one sees the same outage and
    restarts what is left, each heartbeat once per outage."""
    async with conn.transaction():
        previous = await conn.fetchval(LAST_SWEEP)
        restarted = 0
        if previous is not None and now - previous > timedelta(seconds=away):
            status = await conn.execute(RESTART_GRACE, now, previous, away)
            restarted = int(status.split()[-1])
            if await conn.fetchval(STILL_TO_RESTART, now, previous, away):
                return restarted
        # In the same transaction: a sweep that reads this one as the last sees its restarts too.
        noted = await conn.fetchval(NOTE_SWEEP, now)
        await conn.execute(TRIM_SWEEPS, noted, KEPT_SWEEPS)
    return restarted


async def _claim(conn: db.Connection, now: datetime) -> tuple[int, int]:
    """One batch in one transaction: (heartbeats claimed, gone down)."""
    down = 0
    async with conn.transaction():
        rows = await conn.fetch(CLAIM_DUE, now, BATCH)
        for row in rows:
            change = on_sweep(timing_of(row), State.of(row), now)
            if change is None:  # pragma: no cover - the claim's WHERE says it is due
                continue
            await raised.raise_alert(conn, row, change, now)
            await store.save(conn, row["id"], change.state)
            down += 1
    return len(rows), down
