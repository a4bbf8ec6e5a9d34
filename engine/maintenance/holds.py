"""Holding pages during a maintenance window (called by engine.incidents.attach, under the webhook's
row lock taken by ``record_alert``).

``active`` is read first in an alert's transaction, before any incident row is locked, and takes a
share lock on the window: the end sweep (engine.maintenance.ends) claims a window FOR UPDATE SKIP
LOCKED, so an alert being held and the window's release never interleave. Either the alert's
transaction commits first and the sweep then finds its incident held, or the sweep commits first
and the window no longer matches (``ended_at`` set): the alert pages as usual.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from engine import db
from engine.incidents import Actor, EventKind
from engine.incidents.events import add_event

# The window ending last, when several cover the webhook: held incidents wait for all of them.
ACTIVE = """
SELECT id, ends_at, reason FROM maintenance_windows
WHERE (webhook_id = $1 OR (webhook_id IS NULL AND team_id = $2))
  AND starts_at <= $3 AND ends_at > $3 AND ended_at IS NULL
ORDER BY ends_at DESC, id
LIMIT 1
FOR SHARE
"""
HOLD = "UPDATE incidents SET maintenance_window_id = $2 WHERE id = $1"
UNTIL = """
SELECT w.id, max(m.ends_at) AS until FROM webhooks w
JOIN maintenance_windows m ON m.webhook_id = w.id OR (m.webhook_id IS NULL AND m.team_id = w.team_id)
WHERE w.id = ANY($1::uuid[]) AND m.starts_at <= $2 AND m.ends_at > $2 AND m.ended_at IS NULL
GROUP BY w.id
"""


class Quiet(Protocol):
    """What keeps an incident from paging: a maintenance window, or a silence that matched."""

    async def hold(
        self, conn: db.Connection, incident_id: uuid.UUID, now: datetime, *, alert_id: uuid.UUID | None = None
    ) -> None:
        """Mark the incident held by it, and say so in its timeline."""
        ...


@dataclass(frozen=True)
class Window:
    """The window a webhook is in: what a held incident's timeline says."""

    id: uuid.UUID
    ends_at: datetime
    reason: str

    async def hold(
        self, conn: db.Connection, incident_id: uuid.UUID, now: datetime, *, alert_id: uuid.UUID | None = None
    ) -> None:
        await hold(conn, incident_id, self, now, alert_id=alert_id)


async def active(
    conn: db.Connection, webhook_id: uuid.UUID, team_id: uuid.UUID, now: datetime
) -> Window | None:
    """The maintenance window the webhook is in at ``now`` (share-locked until the caller commits)."""
    row = await conn.fetchrow(ACTIVE, webhook_id, team_id, now)
    return Window(row["id"], row["ends_at"], row["reason"]) if row else None


async def hold(
    conn: db.Connection,
    incident_id: uuid.UUID,
    window: Window,
    now: datetime,
    *,
    alert_id: uuid.UUID | None = None,
) -> None:
    """The incident pages nobody until ``window`` ends; its timeline says why."""
    await conn.execute(HOLD, incident_id, window.id)
    text = f"page held: maintenance until {window.ends_at:%Y-%m-%d %H:%M} UTC, reason: {window.reason}"
    await add_event(conn, incident_id, EventKind.PAGE_HELD, Actor.SYSTEM, now, text=text, alert_id=alert_id)


async def until_of(
    conn: db.Connection, webhook_ids: list[uuid.UUID], now: datetime
) -> dict[uuid.UUID, datetime]:
    """webhook id -> the end of the maintenance it is in at ``now`` (webhooks in none are left out)."""
    return {r["id"]: r["until"] for r in await conn.fetch(UNTIL, webhook_ids, now)}
