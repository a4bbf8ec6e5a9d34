"""The end of a maintenance window: what it held is paged then, once, or (``pageOnEnd`` off) not.

A worker's cron sweep (workers/maintenance.py) calls ``take_due`` until it answers None: each call
claims one window whose end has come with ``FOR UPDATE SKIP LOCKED`` (two workers never take one
window), and, if it was not released yet, releases its held incidents in the same transaction:

- resolved or acknowledged meanwhile: nothing (somebody has it, or it is over);
- still covered by another window of the webhook (an overlapping one that ends later): held on;
- else triggered, with ``pageOnEnd``: paged now, through the webhook's escalation policy if it has
  one (its first step is due at once), else one page per (channel, target) of the webhook;
- with ``pageOnEnd`` off: a timeline line says it was not paged.

The caller queues the deliveries once that has committed, then ``mark_enqueued``; a worker dying in
between leaves the window due, and the next sweep queues its pending deliveries again (by delivery
id, so never twice). Pages re-check their incident when sent (DESIGN rule 2): an acknowledge that
lands after the release still stops them.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime

import asyncpg

from engine import db
from engine.alerts.lifecycle import delivery_plan
from engine.incidents import Actor, EventKind
from engine.incidents.attach import Pages
from engine.incidents.events import add_event
from engine.maintenance import holds
from engine.oncall import escalation
from engine.oncall.paging import WakeUp

CLAIM = """
SELECT id, page_on_end, ended_at FROM maintenance_windows
WHERE enqueued_at IS NULL AND ends_at <= $1 AND NOT (id = ANY($2::uuid[]))
ORDER BY ends_at, id
LIMIT 1
FOR UPDATE SKIP LOCKED
"""
HELD = """
SELECT i.id, i.webhook_id, i.escalation_wave, w.team_id, w.notification_types, w.targets,
    w.escalation_policy_id
FROM incidents i JOIN webhooks w ON w.id = i.webhook_id
WHERE i.maintenance_window_id = $1 AND i.status = 'triggered'
ORDER BY i.number
FOR UPDATE OF i
"""
MARK_ENDED = "UPDATE maintenance_windows SET ended_at = $2 WHERE id = $1"
INSERT_PAGE = """
INSERT INTO deliveries (id, alert_id, channel, target, incident_id, kind)
VALUES ($1, NULL, $2, $3, $4, 'page')
"""
PENDING = """
SELECT d.id FROM deliveries d JOIN incidents i ON i.id = d.incident_id
WHERE i.maintenance_window_id = $1 AND d.alert_id IS NULL AND d.kind = 'page' AND d.status = 'pending'
ORDER BY d.id
"""
MARK_ENQUEUED = "UPDATE maintenance_windows SET enqueued_at = $2 WHERE id = $1"


@dataclass
class Released:
    """One window taken by the sweep: the deliveries and escalation wake-ups to queue."""

    window_id: uuid.UUID
    deliveries: list[uuid.UUID] = field(default_factory=list)
    wake_ups: list[WakeUp] = field(default_factory=list)


async def take_due(conn: db.Connection, now: datetime, skip: list[uuid.UUID]) -> Released | None:
    """Claim one window whose end has come at ``now`` (not in ``skip``), release what it held if
    it has not yet; what to queue. None when no window is due."""
    async with conn.transaction():
        window = await conn.fetchrow(CLAIM, now, skip)
        if window is None:
            return None
        released = Released(window["id"])
        if window["ended_at"] is None:
            released.wake_ups = await _release(conn, window, now)
        released.deliveries = [r["id"] for r in await conn.fetch(PENDING, window["id"])]
    return released


async def mark_enqueued(conn: db.Connection, window_id: uuid.UUID, now: datetime) -> None:
    await conn.execute(MARK_ENQUEUED, window_id, now)


async def _release(conn: db.Connection, window: asyncpg.Record, now: datetime) -> list[WakeUp]:
    await conn.execute(MARK_ENDED, window["id"], now)
    wake_ups: list[WakeUp] = []
    for incident in await conn.fetch(HELD, window["id"]):
        incident_id = incident["id"]
        later = await holds.active(conn, incident["webhook_id"], incident["team_id"], now)
        if later is not None:
            await holds.hold(conn, incident_id, later, now)
            continue
        if not window["page_on_end"]:
            text = "maintenance ended: not paged (the window was set not to page on its end)"
            await add_event(conn, incident_id, EventKind.PAGE_RELEASED, Actor.SYSTEM, now, text=text)
            continue
        policy_id = incident["escalation_policy_id"]
        if policy_id is not None:
            await escalation.start(conn, incident_id, policy_id, now)
            wake_ups.append(escalation.step_wake_up(incident_id, incident["escalation_wave"], now))
            text = "maintenance ended: escalating now"
        else:
            rows = [
                (uuid.uuid4(), kind, target, incident_id)
                for kind, target, _ in delivery_plan(incident, Pages.PAGE)
            ]
            await conn.executemany(INSERT_PAGE, rows)
            text = "maintenance ended: paged now"
        await add_event(conn, incident_id, EventKind.PAGE_RELEASED, Actor.SYSTEM, now, text=text)
    return wake_ups
