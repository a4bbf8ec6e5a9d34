"""An incident's timeline: one row per thing that happened to it, and who did it."""

from __future__ import annotations

import uuid
from datetime import datetime

from engine import db
from engine.incidents import Actor, EventKind

ADD_EVENT = """
INSERT INTO incident_events (incident_id, kind, actor, user_id, alert_id, text, created_at)
VALUES ($1, $2, $3, $4, $5, $6, $7)
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
