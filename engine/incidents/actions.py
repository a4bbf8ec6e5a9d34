"""What people do to an incident through the API: acknowledge, resolve, add a note.

Each is one transaction on the incident row (locked FOR UPDATE), by a responder (or above) of the
incident's team (403 below that; 404 for anyone outside the team). Acknowledging stops the
incident's pages at once: a page not yet started re-checks the incident in the transaction that
starts it (engine.alerts.lifecycle.start_attempt) and is cancelled.
A resolve plans the RESOLVED notices (the webhook's notify_on_resolve channels and WEBHOOK), an
acknowledge the ACKNOWLEDGED notices (WEBHOOK: engine.alerts.lifecycle.notice_plan); the caller
enqueues the returned delivery ids once this has committed.
"""

from __future__ import annotations

import uuid
from datetime import datetime

import asyncpg

from engine import db, validate
from engine.alerts.lifecycle import DeliveryKind, notice_plan
from engine.errors import Conflict, NotFound
from engine.incidents import Actor, EventKind, IncidentStatus
from engine.incidents.events import add_event
from engine.oncall import escalation
from engine.teams import Role
from engine.teams.membership import CALLER_ROLE, allowed

LOCK = f"""
SELECT i.id, i.status, i.webhook_id, w.notification_types, w.targets, w.notify_on_resolve,
    {CALLER_ROLE.format(team="i.team_id", user="$2")}
FROM incidents i JOIN webhooks w ON w.id = i.webhook_id
WHERE i.id = $1
FOR UPDATE OF i
"""
ACKNOWLEDGE = """
UPDATE incidents SET status = 'acknowledged', acknowledged_at = $2, acknowledged_by = 'user',
    acknowledged_by_user = $3
WHERE id = $1
"""
RESOLVE = """
UPDATE incidents SET status = 'resolved', resolved_at = $2, resolved_by = 'user', resolved_by_user = $3
WHERE id = $1
"""
INSERT_NOTICE = """
INSERT INTO deliveries (id, alert_id, channel, target, incident_id, kind) VALUES ($1, NULL, $2, $3, $4, $5)
"""
MAX_NOTE = 2000


def parse_id(raw: str) -> uuid.UUID:
    return validate.path_id(raw, lambda: NotFound("incident not found", code="INCIDENT_NOT_FOUND"))


async def _lock(conn: db.Connection, user_id: uuid.UUID, incident_id: uuid.UUID) -> asyncpg.Record:
    row = await conn.fetchrow(LOCK, incident_id, user_id)
    # Acknowledging, resolving and notes are a responder's; to a non-member the incident is not there.
    allowed(
        row["caller_role"] if row else None,
        Role.RESPONDER,
        NotFound("incident not found", code="INCIDENT_NOT_FOUND"),
    )
    assert row is not None
    return row


async def acknowledge(
    conn: db.Connection, user_id: uuid.UUID, incident_id: uuid.UUID, now: datetime, *, via: str | None = None
) -> list[uuid.UUID]:
    """triggered -> acknowledged; acknowledging again is a no-op; a resolved incident is 409.
    ``via``: the channel it came from when not the API (the timeline says "via push").
    Returns the ACKNOWLEDGED notices to enqueue (none for a no-op: a receiver hears of it once)."""
    async with conn.transaction():
        row = await _lock(conn, user_id, incident_id)
        if row["status"] == IncidentStatus.RESOLVED:
            raise Conflict("incident is resolved already", code="INCIDENT_RESOLVED")
        if row["status"] == IncidentStatus.ACKNOWLEDGED:
            return []
        await conn.execute(ACKNOWLEDGE, incident_id, now, user_id)
        await escalation.stop(conn, incident_id, "incident acknowledged")
        await add_event(
            conn, incident_id, EventKind.ACKNOWLEDGED, Actor.USER, now, text=_via(via), user_id=user_id
        )
        return await _notices(conn, row, incident_id, DeliveryKind.ACKNOWLEDGED)


async def resolve(
    conn: db.Connection, user_id: uuid.UUID, incident_id: uuid.UUID, now: datetime, *, via: str | None = None
) -> list[uuid.UUID]:
    """Resolve (from triggered or acknowledged); returns the RESOLVED notices to enqueue."""
    async with conn.transaction():
        row = await _lock(conn, user_id, incident_id)
        if row["status"] == IncidentStatus.RESOLVED:
            return []
        await conn.execute(RESOLVE, incident_id, now, user_id)
        await escalation.stop(conn, incident_id, "incident resolved")
        await add_event(
            conn, incident_id, EventKind.RESOLVED, Actor.USER, now, text=_via(via), user_id=user_id
        )
        return await _notices(conn, row, incident_id, DeliveryKind.RESOLVED)


async def _notices(
    conn: db.Connection, row: asyncpg.Record, incident_id: uuid.UUID, kind: DeliveryKind
) -> list[uuid.UUID]:
    """Plan the incident's notices of ``kind`` (in the caller's transaction); their delivery ids."""
    planned = await notice_plan(conn, row, incident_id, kind)
    notices = [(uuid.uuid4(), channel, target, incident_id, kind.value) for channel, target in planned]
    await conn.executemany(INSERT_NOTICE, notices)
    return [n[0] for n in notices]


def _via(channel: str | None) -> str:
    return f"via {channel}" if channel else ""


async def add_note(
    conn: db.Connection, user_id: uuid.UUID, incident_id: uuid.UUID, body: object, now: datetime
) -> None:
    body = validate.require_object(body)
    validate.only_known(body, {"text"})
    text = validate.string(body, "text", required=True, min_length=1, max_length=MAX_NOTE)
    assert text is not None
    async with conn.transaction():
        await _lock(conn, user_id, incident_id)
        await add_event(conn, incident_id, EventKind.NOTE, Actor.USER, now, text=text, user_id=user_id)
