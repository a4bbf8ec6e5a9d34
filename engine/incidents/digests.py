"""The storm digest: one page per channel for the incidents whose pages a storm held.

``engine.incidents.noise.hold_if_storm`` puts an incident in its webhook's open digest (a row in
``digests``, due a minute after its first held page). A worker's cron sweep (``workers/digests.py``)
calls ``take_due`` until it answers None: each call claims one due digest with ``FOR UPDATE SKIP
LOCKED`` (two workers never take one digest), and, if it was not sent yet, writes its text and one
delivery per (channel, target) of the webhook in the same transaction. The caller enqueues the
deliveries once that has committed, then ``mark_enqueued``; a worker dying in between leaves the
digest due, and the next sweep, on any worker, enqueues its deliveries again (by delivery id, so
nothing is queued twice). PostgreSQL holds what is owed; Redis only wakes someone up.

What it says: "17 new incidents on Production Alerts, top: #12 DB down, #13 Disk full, …", the
incidents still triggered when it is sent, loudest first. Those acknowledged or resolved meanwhile
are left out; a digest with none left pages nobody.
"""

from __future__ import annotations

import uuid
from datetime import datetime

import asyncpg

from engine import db
from engine.alerts.pages import listing_lines, listing_title
from engine.channels.base import SEVERITIES
from engine.channels.registry import TARGET_KEYS
from engine.incidents import Actor, EventKind
from engine.incidents.events import add_event

LISTED = 20  # incidents a digest's message lists one by one

CLAIM = """
SELECT g.id, g.sent_at, w.name, w.notification_types, w.targets
FROM digests g JOIN webhooks w ON w.id = g.webhook_id
WHERE g.enqueued_at IS NULL AND g.due_at <= $1 AND NOT (g.id = ANY($2::uuid[]))
ORDER BY g.due_at
LIMIT 1
FOR UPDATE OF g SKIP LOCKED
"""
HELD = """
SELECT i.id, i.number, i.title, i.severity,
    (SELECT a.id FROM alerts a WHERE a.incident_id = i.id ORDER BY a.received_at LIMIT 1) AS alert_id
FROM incidents i
WHERE i.digest_id = $1 AND i.status = 'triggered'
ORDER BY array_position($2::text[], i.severity), i.number
"""
MARK_SENT = """
UPDATE digests SET sent_at = $2, title = $3, message = $4, severity = $5, alert_id = $6 WHERE id = $1
"""
INSERT_DELIVERY = """
INSERT INTO deliveries (id, alert_id, channel, target, incident_id, kind, digest_id)
VALUES ($1, NULL, $2, $3, NULL, 'digest', $4)
"""
PENDING = "SELECT id FROM deliveries WHERE digest_id = $1 AND status = 'pending' ORDER BY id"
MARK_ENQUEUED = "UPDATE digests SET enqueued_at = $2 WHERE id = $1"


async def take_due(
    conn: db.Connection, now: datetime, skip: list[uuid.UUID]
) -> tuple[uuid.UUID, list[uuid.UUID]] | None:
    """Claim one digest due at ``now`` (not in ``skip``), send it if it was not; its pending
    deliveries to enqueue. None when no digest is due."""
    async with conn.transaction():
        digest = await conn.fetchrow(CLAIM, now, skip)
        if digest is None:
            return None
        if digest["sent_at"] is None:
            await _send(conn, digest, now)
        pending = [r["id"] for r in await conn.fetch(PENDING, digest["id"])]
    return digest["id"], pending


async def mark_enqueued(conn: db.Connection, digest_id: uuid.UUID, now: datetime) -> None:
    await conn.execute(MARK_ENQUEUED, digest_id, now)


async def _send(conn: db.Connection, digest: asyncpg.Record, now: datetime) -> None:
    held = await conn.fetch(HELD, digest["id"], list(SEVERITIES))
    if not held:
        await conn.execute(MARK_SENT, digest["id"], now, None, None, None, None)
        return
    title, message = digest_text(digest["name"], held)
    await conn.execute(MARK_SENT, digest["id"], now, title, message, held[0]["severity"], held[0]["alert_id"])
    rows = [
        (uuid.uuid4(), kind, target, digest["id"])
        for kind in digest["notification_types"]
        for target in digest["targets"].get(TARGET_KEYS[kind], [])
    ]
    await conn.executemany(INSERT_DELIVERY, rows)
    text = f"paged in a digest of {len(held)} incidents"
    for incident in held:
        await add_event(conn, incident["id"], EventKind.DIGEST_SENT, Actor.SYSTEM, now, text=text)


def digest_text(webhook_name: str, held: list[asyncpg.Record]) -> tuple[str, str]:
    """The digest's title ("17 new incidents on X, top: #12 DB down, …") and message."""
    title = listing_title(f"{len(held)} new incidents on {webhook_name}, top: ", held)
    lines = listing_lines(held, LISTED)
    intro = (
        f"A storm of new incidents on {webhook_name}: their pages were held and come as this one "
        "digest, a minute after the first of them."
    )
    return title, "\n".join([intro, "", *lines])
