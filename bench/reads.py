"""Scenario 6 of the suite (bench/suite.py): the rows behind the reads, loaded in SQL.

One real user (made by engine.auth.users.create_user, with an API key) owns, in their personal
team: ``webhooks`` webhooks, ``alerts`` alerts spread over them, ``incidents`` incidents (one in
ten open, the rest resolved, as a team's history looks) and, through bench/notifications_unread.py,
the heavy inbox (1 in 20 of the notifications, at most 50,000, 1 % unread) among
``notifications`` in all. Each table is filled by one ``INSERT ... SELECT ... generate_series``
(seconds for a million rows, where the engine's own path would take hours), then VACUUM ANALYZE,
so the planner sees what a long-lived database holds.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import asyncpg

from bench import notifications_unread
from engine.auth.api_keys import create_api_key
from engine.auth.users import create_user
from engine.teams.membership import personal_team_id

WEBHOOKS = """
INSERT INTO webhooks (id, user_id, team_id, name, alias, token, notification_types, targets,
    total_calls, successful_calls, created_at)
SELECT gen_random_uuid(), $1, $2, 'reads ' || n, 'reads-' || n, 'reads-' || md5(random()::text) || n,
    '{PUSH_NOTIF}', '{"push": ["reads-topic"]}', $3::bigint / $4, $3::bigint / $4,
    now() - make_interval(mins => n)
FROM generate_series(1, $4::int) n
"""
ALERTS = """
INSERT INTO alerts (id, webhook_id, user_id, status, title, severity, format, received_at, processed_at,
    finished_at)
SELECT gen_random_uuid(), w.ids[1 + n % array_length(w.ids, 1)], $1, 'successful', 'reads alert ' || n,
    'critical', 'generic', now() - make_interval(secs => n), now() - make_interval(secs => n),
    now() - make_interval(secs => n)
FROM (SELECT array_agg(id) AS ids FROM webhooks WHERE user_id = $1) w, generate_series(1, $2::int) n
"""
# Newest first in number order; one in ten open (triggered), the rest resolved.
INCIDENTS = """
INSERT INTO incidents (id, user_id, team_id, webhook_id, number, title, severity, status, alert_count,
    first_alert_at, last_alert_at, resolved_at, created_at)
SELECT gen_random_uuid(), $1, $2, w.ids[1 + n % array_length(w.ids, 1)], n, 'reads incident ' || n,
    'critical', CASE WHEN n % 10 = 0 THEN 'triggered' ELSE 'resolved' END, 1,
    now() - make_interval(secs => $3 - n), now() - make_interval(secs => $3 - n),
    CASE WHEN n % 10 = 0 THEN NULL ELSE now() END, now() - make_interval(secs => $3 - n)
FROM (SELECT array_agg(id) AS ids FROM webhooks WHERE user_id = $1) w, generate_series(1, $3::int) n
"""
SEQUENCE = "UPDATE teams SET incident_seq = $2 WHERE id = $1"


@dataclass(frozen=True)
class Loaded:
    user_id: uuid.UUID
    api_key: str
    counts: dict[str, int]


async def load(
    conn: asyncpg.Connection, *, webhooks: int, alerts: int, incidents: int, notifications: int
) -> Loaded:
    """Fill the tables for one new user; what each table holds afterwards, counted."""
    user = await create_user(conn, f"reads-{uuid.uuid4().hex[:8]}@example.com")
    key, _ = await create_api_key(conn, user.id, "bench reads")
    team = await personal_team_id(conn, user.id)
    await conn.execute(WEBHOOKS, user.id, team, alerts, webhooks)
    await conn.execute(ALERTS, user.id, alerts)
    await conn.execute(INCIDENTS, user.id, team, incidents)
    await conn.execute(SEQUENCE, team, incidents)
    heavy = min(50_000, notifications // 20)
    await notifications_unread.fill(conn, max(0, notifications - heavy), heavy=user.id, heavy_rows=heavy)
    for table in ("webhooks", "alerts", "incidents"):
        await conn.execute(f"VACUUM ANALYZE {table}")
    counts = {
        table: int(await conn.fetchval(f"SELECT count(*) FROM {table}"))
        for table in ("webhooks", "alerts", "incidents", "notifications")
    }
    return Loaded(user.id, key, counts)
