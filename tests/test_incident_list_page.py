"""The incident list (engine.incidents.queries.list_page) over several teams and a long history:
one page merges every team's newest incidents, and an open page reads a page of rows, not every
open incident (bench/suite.py scenario 6 measures it with 100,000)."""

from __future__ import annotations

import json
import uuid
from typing import Any

import asyncpg

from engine.incidents import queries
from engine.teams.membership import personal_team_id
from tests.support.factories import Account

WEBHOOK = """
INSERT INTO webhooks (id, user_id, team_id, name, alias, token, notification_types)
VALUES ($1, $2, $3, 'list', $4, $4, '{EMAIL}')
"""
# ``$4`` incidents in team $2, created a second apart from ``$5`` seconds ago; every ``$6``th open.
INCIDENTS = """
INSERT INTO incidents (id, user_id, team_id, webhook_id, number, title, severity, status,
    first_alert_at, last_alert_at, created_at)
SELECT gen_random_uuid(), $1, $2, $3, n, 'incident ' || n, 'critical',
    CASE WHEN n % $6 = 0 THEN 'triggered' ELSE 'resolved' END, now(), now(),
    now() - make_interval(secs => $5 + 2 * n)
FROM generate_series(1, $4::int) n
"""


async def team_with_webhook(conn: asyncpg.Connection, account: Account, team_id: uuid.UUID) -> uuid.UUID:
    webhook_id = uuid.uuid4()
    await conn.execute(WEBHOOK, webhook_id, account.user.id, team_id, f"list-{webhook_id.hex[:12]}")
    return webhook_id


def walk(node: dict[str, Any]) -> list[dict[str, Any]]:
    return [node, *(n for child in node.get("Plans", []) for n in walk(child))]


async def test_open_incidents_of_two_teams_come_newest_first_across_both(
    pool: asyncpg.Pool, account: Account
) -> None:
    async with pool.acquire() as conn:
        personal = await personal_team_id(conn, account.user.id)
        shared = uuid.uuid4()
        await conn.execute("INSERT INTO teams (id, name) VALUES ($1, 'shared')", shared)
        await conn.execute(
            "INSERT INTO team_members (team_id, user_id, role) VALUES ($1, $2, 'responder')",
            shared,
            account.user.id,
        )
        # Interleaved in time: the personal team's at even seconds, the shared team's at odd ones.
        for team, offset in ((personal, 0), (shared, 1)):
            webhook_id = await team_with_webhook(conn, account, team)
            await conn.execute(INCIDENTS, account.user.id, team, webhook_id, 30, offset, 3)
        seen: list[tuple[uuid.UUID, int]] = []
        cursor: str | None = None
        while True:
            rows, cursor = await queries.list_page(
                conn,
                account.user.id,
                {"status": "open", "limit": "4", **({"cursor": cursor} if cursor else {})},
            )
            assert len(rows) <= 4
            seen += [(r["team_id"], r["number"]) for r in rows]
            if cursor is None:
                break
        only_shared, _ = await queries.list_page(
            conn, account.user.id, {"status": "open", "team": str(shared)}
        )

    # Newest first: number 3 of the personal team (6 s ago), then 3 of the shared one (7 s ago)...
    assert seen == [(team, n) for n in range(3, 31, 3) for team in (personal, shared)]
    assert [r["number"] for r in only_shared] == list(range(3, 31, 3))


async def test_a_page_of_open_incidents_reads_a_page_not_every_open_one(
    pool: asyncpg.Pool, account: Account
) -> None:
    async with pool.acquire() as conn:
        transaction = conn.transaction()  # rolled back: the session database stays small
        await transaction.start()
        try:
            team = await personal_team_id(conn, account.user.id)
            webhook_id = await team_with_webhook(conn, account, team)
            # 20,000 incidents of which 2,000 open.
            await conn.execute(INCIDENTS, account.user.id, team, webhook_id, 20_000, 0, 10)
            await conn.execute("ANALYZE incidents")
            statuses = ["triggered", "acknowledged"]
            plan = json.loads(
                await conn.fetchval(
                    f"EXPLAIN (ANALYZE, FORMAT JSON) {queries.PAGE}",
                    account.user.id,
                    statuses,
                    None,
                    None,
                    None,
                    51,
                    None,
                    None,
                    None,
                )
            )
            rows, cursor = await queries.list_page(conn, account.user.id, {"status": "open"})
        finally:
            await transaction.rollback()

    assert len(rows) == 50 and cursor is not None
    assert [r["number"] for r in rows] == list(range(10, 510, 10))
    scans = [n for n in walk(plan[0]["Plan"]) if n.get("Relation Name") == "incidents"]
    assert scans, plan
    # Each scan of incidents stops after a page (51 rows); reading every open one would be 2,000.
    assert all(n["Actual Rows"] <= 51 for n in scans), [(n["Node Type"], n["Actual Rows"]) for n in scans]
