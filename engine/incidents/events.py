"""An incident's timeline: one row per thing that happened to it, and who did it.

Every change to an incident adds a row here, so this is also where the change is announced: the
same statement NOTIFYs ``engine.incidents.live.CHANNEL`` with the incident's team and id.
PostgreSQL delivers a notification only when its transaction commits (and never one of a
transaction rolled back), so a live page never shows a change that did not happen.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from engine import db
from engine.incidents import Actor, EventKind
from engine.incidents.live import CHANNEL

ADD_EVENT = f"""
WITH added AS (
    INSERT INTO incident_events (incident_id, kind, actor, user_id, alert_id, text, created_at)
    VALUES ($1, $2, $3, $4, $5, $6, $7)
    RETURNING incident_id, kind
)
SELECT pg_notify(
    '{CHANNEL}', json_build_object('team_id', i.team_id, 'incident_id', i.id, 'kind', a.kind)::text
)
FROM added a JOIN incidents i ON i.id = a.incident_id
"""


async def add_event(
    conn: db.Connection,
    incident_id: uuid.UUID,
    kind: EventKind,
    actor: Actor,
    at: datetime,
    *,
    text: str = "",
    user_id: uuid.UUID | None = None,
    alert_id: uuid.UUID | None = None,
) -> None:
    await conn.execute(ADD_EVENT, incident_id, kind.value, actor.value, user_id, alert_id, text[:2000], at)
