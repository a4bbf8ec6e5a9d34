"""The heartbeats row: its columns, reading one locked, and writing its state back."""

from __future__ import annotations

import uuid

import asyncpg

from engine import db
from engine.heartbeats.state import State

COLUMNS = """h.id, h.webhook_id, h.name, h.token, h.period_seconds, h.cron, h.time_zone, h.grace_seconds,
    h.status, h.last_ping_at, h.last_ping_kind, h.started_at, h.expected_at, h.due_at, h.down_since,
    h.ping_count, h.created_by, h.created_at, h.updated_at"""
LOCK = f"""
SELECT {COLUMNS}, w.status AS webhook_status FROM heartbeats h JOIN webhooks w ON w.id = h.webhook_id
WHERE h.id = $1
FOR UPDATE OF h
"""
SAVE = f"""
UPDATE heartbeats h SET status = $2, last_ping_at = $3, last_ping_kind = $4, started_at = $5,
    expected_at = $6, due_at = $7, down_since = $8, ping_count = ping_count + $9
WHERE h.id = $1
RETURNING {COLUMNS}
"""


async def lock(conn: db.Connection, heartbeat_id: uuid.UUID) -> asyncpg.Record | None:
    """The heartbeat's row and its webhook's status, held until the caller's transaction ends
    (None: deleted)."""
    return await conn.fetchrow(LOCK, heartbeat_id)


async def save(
    conn: db.Connection, heartbeat_id: uuid.UUID, state: State, *, pings: int = 0
) -> asyncpg.Record:
    """Write ``state`` (and count ``pings`` more); the row as it now is."""
    row = await conn.fetchrow(
        SAVE,
        heartbeat_id,
        state.status.value,
        state.last_ping_at,
        state.last_ping_kind.value if state.last_ping_kind is not None else None,
        state.started_at,
        state.expected_at,
        state.due_at,
        state.down_since,
        pings,
    )
    assert row is not None  # the caller holds the row locked
    return row
