"""Pages: the planned notifications of paged users, one row per notification rule, and their
turning into deliveries.

Paging a user (``page_users``) inserts one row per rule of their notification plan
(engine.oncall.notification_rules), due ``delay_minutes`` after now; a rule that must not be sent
(an unverified number) is a ``skipped`` row with its reason, and a timeline event says so.
``send_due`` claims due rows with ``FOR UPDATE SKIP LOCKED`` (two workers never take one row) and
takes their incidents ``FOR SHARE SKIP LOCKED``; it never waits for a lock, so it cannot deadlock
with an acknowledge, which locks the incident and then the pages. A page of a triggered incident
becomes a delivery in the transaction that marks it sent; the caller queues the deliveries of
``unqueued`` pages after commit and marks them, so a worker dying in between leaves them for the
next sweep. The deliver job re-checks the incident before each send (DESIGN rule 2).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from engine import db
from engine.incidents import Actor, EventKind
from engine.incidents.events import add_event
from engine.oncall.notification_rules import notification_plan


class PageStatus(StrEnum):
    PENDING = "pending"  # due at due_at
    SENT = "sent"  # its delivery exists (delivery_id)
    CANCELLED = "cancelled"  # acknowledged, resolved or escalated past before it was due
    SKIPPED = "skipped"  # never sendable (reason): an unverified number


@dataclass(frozen=True)
class Paged:
    """A user to page, and how the timeline names them."""

    id: uuid.UUID
    label: str


@dataclass(frozen=True)
class WakeUp:
    """A Redis job to run a sweep at ``at`` (the clock's time); ``job_id`` derives from the rows,
    so queueing it again is a no-op."""

    job_id: str
    at: datetime
    step: bool = False  # the wake-up of an incident's next step (else of planned pages)


INSERT_PAGE = """
INSERT INTO pages (id, incident_id, user_id, contact_method_id, channel, target, step, loop, wave,
    rule_delay, due_at, status, reason, created_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
ON CONFLICT DO NOTHING
"""
CANCEL_PENDING = """
UPDATE pages SET status = 'cancelled', reason = $2 WHERE incident_id = $1 AND status = 'pending'
"""
CLEAR_ASSIGNMENTS = "DELETE FROM incident_assignments WHERE incident_id = $1"
ASSIGN = """
INSERT INTO incident_assignments (incident_id, user_id, assigned_at, step, loop) VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (incident_id, user_id) DO UPDATE SET assigned_at = $3, step = $4, loop = $5
"""
CLAIM_DUE = """
SELECT id, incident_id, channel, target FROM pages
WHERE status = 'pending' AND due_at <= $1
ORDER BY due_at, id
LIMIT $2
FOR UPDATE SKIP LOCKED
"""
# An incident locked by an acknowledge (FOR UPDATE) is skipped, not waited for: its pages are
# cancelled by that acknowledge, or claimed again by the next sweep.
LOCK_INCIDENTS = "SELECT id, status FROM incidents WHERE id = ANY($1::uuid[]) FOR SHARE SKIP LOCKED"
# kind 'page' (engine.alerts.lifecycle.DeliveryKind.PAGE): the deliver job re-checks its incident.
INSERT_DELIVERY = """
INSERT INTO deliveries (id, alert_id, channel, target, incident_id, kind)
VALUES ($1, NULL, $2, $3, $4, 'page')
"""
MARK_SENT = "UPDATE pages SET status = 'sent', delivery_id = $2, sent_at = $3 WHERE id = $1"
CANCEL_ONE = "UPDATE pages SET status = 'cancelled', reason = $2 WHERE id = $1"
UNQUEUED = """
SELECT id, delivery_id FROM pages WHERE status = 'sent' AND enqueued_at IS NULL
ORDER BY sent_at LIMIT $1
"""
MARK_ENQUEUED = "UPDATE pages SET enqueued_at = $2 WHERE id = ANY($1::uuid[]) AND enqueued_at IS NULL"
NOTICE_TARGETS = """
SELECT DISTINCT channel, target FROM pages
WHERE incident_id = $1 AND status = 'sent' AND channel = ANY($2::text[])
ORDER BY channel, target
"""


async def cancel_pending(conn: db.Connection, incident_id: uuid.UUID, reason: str) -> None:
    await conn.execute(CANCEL_PENDING, incident_id, reason)


async def page_users(
    conn: db.Connection,
    incident_id: uuid.UUID,
    users: list[Paged],
    *,
    step: int,
    loop: int,
    wave: int,
    now: datetime,
) -> list[WakeUp]:
    """Assign the incident to ``users`` (replacing whoever had it) and plan their pages; the
    pages not yet due when this commits need the wake-ups returned."""
    await conn.execute(CLEAR_ASSIGNMENTS, incident_id)
    due_times: set[tuple[int, datetime]] = set()
    for user in users:
        await conn.execute(ASSIGN, incident_id, user.id, now, step, loop)
        plan = await notification_plan(conn, user.id)
        if not plan:
            text = f"{user.label}: no notification rules, not paged"
            await add_event(conn, incident_id, EventKind.PAGE_SKIPPED, Actor.SYSTEM, now, text=text)
            continue
        for contact in plan:
            due = now + timedelta(minutes=contact.delay_minutes)
            status = PageStatus.PENDING if contact.skipped_reason is None else PageStatus.SKIPPED
            await conn.execute(
                INSERT_PAGE,
                uuid.uuid4(),
                incident_id,
                user.id,
                contact.contact_method_id,
                contact.type,
                contact.target,
                step,
                loop,
                wave,
                contact.delay_minutes,
                due,
                status.value,
                contact.skipped_reason,
                now,
            )
            if contact.skipped_reason is not None:
                text = f"{user.label}: {contact.type} {contact.target} skipped: {contact.skipped_reason}"
                await add_event(
                    conn, incident_id, EventKind.PAGE_SKIPPED, Actor.SYSTEM, now, text=text, user_id=user.id
                )
            else:
                due_times.add((contact.delay_minutes, due))
    return [WakeUp(f"page:{incident_id}:{wave}:{delay}", due) for delay, due in sorted(due_times)]


async def send_due(conn: db.Connection, now: datetime, limit: int) -> int:
    """Turn up to ``limit`` due pages into deliveries (call inside a transaction); how many rows
    were claimed (a page of a locked incident is left for later)."""
    due = await conn.fetch(CLAIM_DUE, now, limit)
    if not due:
        return 0
    incidents = {
        r["id"]: r["status"] for r in await conn.fetch(LOCK_INCIDENTS, list({p["incident_id"] for p in due}))
    }
    for page in due:
        status = incidents.get(page["incident_id"])
        if status is None:
            continue
        if status != "triggered":
            await conn.execute(CANCEL_ONE, page["id"], f"incident {status}")
            continue
        delivery_id = uuid.uuid4()
        await conn.execute(INSERT_DELIVERY, delivery_id, page["channel"], page["target"], page["incident_id"])
        await conn.execute(MARK_SENT, page["id"], delivery_id, now)
    return len(due)


async def unqueued(conn: db.Connection, limit: int) -> list[tuple[uuid.UUID, uuid.UUID]]:
    """(page id, delivery id) of sent pages whose delivery job may not be queued yet."""
    return [(r["id"], r["delivery_id"]) for r in await conn.fetch(UNQUEUED, limit)]


async def mark_enqueued(conn: db.Connection, page_ids: list[uuid.UUID], now: datetime) -> None:
    await conn.execute(MARK_ENQUEUED, page_ids, now)


async def notice_targets(
    conn: db.Connection, incident_id: uuid.UUID, channels: list[str]
) -> list[tuple[str, str]]:
    """Where the RESOLVED notice of an escalated incident goes: every (channel, target) a page of
    it was sent to, on the webhook's notifyOnResolve channels."""
    return [(r["channel"], r["target"]) for r in await conn.fetch(NOTICE_TARGETS, incident_id, channels)]
