"""The notice before a maintenance window ends: 10 minutes before its end, every member of its team
finds "Maintenance on Production ends in 10 minutes" in their inbox, with what will happen then
(how many incidents it holds, and whether they are paged), so whoever runs the work can extend
it in time.

The end sweep's worker (workers/maintenance.py) calls ``remind_due`` each round: it claims the
active windows within ``LEAD`` of their end that have had no reminder (``FOR UPDATE SKIP LOCKED``,
so two workers never remind twice) and writes the notices in the same transaction as
``reminded_at``. A window shorter than ``LEAD`` gets none (its team has just made it), and one
whose end changes (``PATCH endsAt``) is reminded again before its new end.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import asyncpg

from engine import db
from engine.notifications import NotificationKind, create

LEAD = timedelta(minutes=10)
MAX_PER_SWEEP = 100

CLAIM = """
SELECT m.id, m.team_id, m.webhook_id, m.ends_at, m.reason, m.page_on_end,
    coalesce(w.name, 'every webhook of ' || t.name) AS covers,
    (SELECT count(*) FROM incidents i WHERE i.maintenance_window_id = m.id AND i.status = 'triggered') AS held
FROM maintenance_windows m JOIN teams t ON t.id = m.team_id LEFT JOIN webhooks w ON w.id = m.webhook_id
WHERE m.reminded_at IS NULL AND m.ended_at IS NULL AND m.starts_at <= $1 AND m.ends_at > $1
  AND m.ends_at <= $1 + $2::interval AND m.ends_at - m.starts_at > $2::interval
ORDER BY m.ends_at, m.id
LIMIT $3
FOR UPDATE OF m SKIP LOCKED
"""
MEMBERS = "SELECT user_id FROM team_members WHERE team_id = $1 ORDER BY user_id"
MARK = "UPDATE maintenance_windows SET reminded_at = $2 WHERE id = $1"


async def remind_due(conn: db.Connection, now: datetime) -> int:
    """Remind the team of each window ending within LEAD of ``now``; how many windows."""
    async with conn.transaction():
        windows = await conn.fetch(CLAIM, now, LEAD, MAX_PER_SWEEP)
        for window in windows:
            title, body = _notice(window, now)
            for member in await conn.fetch(MEMBERS, window["team_id"]):
                await create(
                    conn,
                    member["user_id"],
                    NotificationKind.MAINTENANCE_ENDING,
                    title,
                    body,
                    webhook_id=window["webhook_id"],
                )
            await conn.execute(MARK, window["id"], now)
    return len(windows)


def _notice(window: asyncpg.Record, now: datetime) -> tuple[str, str]:
    """The reminder's title and body: when it ends, what it holds, what happens then."""
    minutes = max(1, round((window["ends_at"] - now).total_seconds() / 60))
    title = f"Maintenance on {window['covers']} ends in {minutes} minute{'s' if minutes > 1 else ''}"
    held = window["held"]
    then = (
        "they are paged then, unless acknowledged or resolved"
        if window["page_on_end"]
        else "they are not paged then (the window was set not to page on its end)"
    )
    body = (
        f"{window['reason']}: ends at {window['ends_at']:%Y-%m-%d %H:%M} UTC. "
        f"{held} incident{'s' if held != 1 else ''} held, {then}. "
        f"If the work runs late, extend it: PATCH /api/maintenance-windows/{window['id']} with a later end."
    )
    return title, body
