"""A heartbeat's alerts on their way: raised through the alert path, then their work queued.

``raise_alert`` runs in the transaction that changes the heartbeat (its row locked), so the alert
and the change commit together and one heartbeat's alerts are stored in the order of its changes
(late, then back). It stores the alert as process_alert does (``record_alert``: the incident, its
pages or its escalation policy) and notes it in ``heartbeat_alerts``. Once that has committed the
caller runs ``queue_owed``: the alert's deliveries are queued and its escalation woken, and the
note goes. A process that dies in between leaves the note to the next sweep, on any worker;
deliveries are queued by their id, so nothing is queued twice.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from datetime import datetime

import asyncpg
from arq.connections import ArqRedis

from engine import db, queue
from engine.alerts import lifecycle
from engine.clock import Clock
from engine.heartbeats.alerts import heartbeat_alert
from engine.heartbeats.state import Change
from engine.oncall import escalation
from engine.oncall.paging import WakeUp

log = logging.getLogger("monoduty.heartbeats")

NOTE = "INSERT INTO heartbeat_alerts (alert_id, raised_at) VALUES ($1, $2)"
OWED = "SELECT alert_id FROM heartbeat_alerts ORDER BY raised_at LIMIT $1"
DONE = "DELETE FROM heartbeat_alerts WHERE alert_id = ANY($1::uuid[])"
OWED_BATCH = 200


async def raise_alert(
    conn: db.Connection, row: asyncpg.Record, change: Change, now: datetime, *, log_text: str = ""
) -> uuid.UUID | None:
    """Store the alert of ``change`` to the heartbeat ``row`` (as it was before it); its id, or
    None when there is none to raise."""
    if change.alert is None:
        return None
    parsed = heartbeat_alert(
        change.alert,
        row["id"],
        row["name"],
        now,
        last_ping_at=row["last_ping_at"],
        expected_at=row["expected_at"],
        started_at=row["started_at"],
        down_since=row["down_since"],
        log=log_text,
    )
    alert_id = uuid.uuid4()
    stored = await lifecycle.record_alert(conn, alert_id, row["webhook_id"], parsed, received_at=now, now=now)
    if stored is None:  # pragma: no cover - the heartbeat's row lock keeps its webhook there
        return None
    await conn.execute(NOTE, alert_id, now)
    fields = {"heartbeat_id": str(row["id"]), "webhook_id": str(row["webhook_id"]), "alert_id": str(alert_id)}
    log.info("heartbeat %s: %s", change.alert.value, parsed.title, extra=fields)
    return alert_id


async def queue_owed(
    pool: asyncpg.Pool, redis: ArqRedis, clock: Clock, alert_ids: Sequence[uuid.UUID] | None = None
) -> int:
    """Queue the deliveries and escalation wake-ups of ``alert_ids`` (default: every alert still
    owed); how many alerts it queued for."""
    async with pool.acquire() as conn:
        if alert_ids is None:
            alert_ids = [r["alert_id"] for r in await conn.fetch(OWED, OWED_BATCH)]
        ids = list(alert_ids)
        deliveries: list[uuid.UUID] = []
        wake_ups: list[WakeUp] = []
        for alert_id in ids:
            deliveries += [r["id"] for r in await conn.fetch(lifecycle.PENDING_DELIVERIES, alert_id)]
            wake_ups += await escalation.wake_ups_of_alert(conn, alert_id)
    for delivery_id in deliveries:
        await queue.enqueue_delivery(redis, str(delivery_id))
    await escalation.enqueue_wake_ups(redis, clock, wake_ups)
    if ids:
        async with pool.acquire() as conn:
            await conn.execute(DONE, ids)
    return len(ids)
