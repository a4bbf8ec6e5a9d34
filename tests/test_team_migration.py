"""A database made by the schema.sql from before teams migrates with `monoduty migrate`: every
user gets a personal team they own, their webhooks move into it with their incidents (numbers
kept, and the next one follows on), and webhooks, alerts and statistics are otherwise untouched."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import asyncpg

from engine import db
from engine.alerts import lifecycle
from engine.alerts.payloads import parse_alert
from engine.auth.users import create_user
from tests.support.migrations import schema_before, scratch_database
from tests.support.processes import monoduty, monoduty_env
from tests.support.services import Services

SNAPSHOT = {
    "users": "SELECT id, email, name FROM users ORDER BY id",
    "webhooks": "SELECT id, user_id, name, alias, token, total_calls, successful_calls, failed_calls,"
    " pending_calls FROM webhooks ORDER BY id",
    "alerts": "SELECT id, webhook_id, status FROM alerts ORDER BY id",
    "incidents": "SELECT id, user_id, webhook_id, number, status FROM incidents ORDER BY id",
}


async def _old_data(conn: asyncpg.Connection) -> dict[str, list[tuple]]:
    """Two users (one named), a webhook each with counted calls, alerts."""
    for number, name in enumerate(["Ada", None]):
        user_id, webhook_id = uuid.uuid4(), uuid.uuid4()
        email = f"old{number}@example.com"
        await conn.execute("INSERT INTO users (id, email, name) VALUES ($1, $2, $3)", user_id, email, name)
        await conn.execute(
            "INSERT INTO webhooks (id, user_id, name, alias, token, notification_types, targets,"
            " total_calls, successful_calls, failed_calls)"
            " VALUES ($1, $2, 'Old', 'old', $3, '{EMAIL}', '{\"email\": [\"a@example.com\"]}', 3, 2, 1)",
            webhook_id,
            user_id,
            f"tok-old-{number}-{uuid.uuid4().hex}",
        )
        for status in ("successful", "successful", "failed"):
            await conn.execute(
                "INSERT INTO alerts (id, webhook_id, user_id, title, severity, format, status, received_at)"
                " VALUES ($1, $2, $3, 'old alert', 'error', 'generic', $4, now())",
                uuid.uuid4(),
                webhook_id,
                user_id,
                status,
            )
        # two incidents numbered per user, as before teams
        for n in (1, 2):
            await conn.execute(
                "INSERT INTO incidents (id, user_id, webhook_id, number, title, severity, dedup_key,"
                " first_alert_at, last_alert_at, status)"
                " VALUES ($1, $2, $3, $4, 'old', 'error', $5, now(), now(), 'resolved')",
                uuid.uuid4(),
                user_id,
                webhook_id,
                n,
                f"k{n}",
            )
        await conn.execute("UPDATE users SET incident_seq = 2 WHERE id = $1", user_id)
    return await _snapshot(conn)


async def _snapshot(conn: asyncpg.Connection) -> dict[str, list[tuple]]:
    return {table: [tuple(r) for r in await conn.fetch(sql)] for table, sql in SNAPSHOT.items()}


async def test_a_database_from_before_teams_gives_every_user_a_personal_team(services: Services) -> None:
    async with scratch_database(services) as url:
        conn = await asyncpg.connect(url)
        try:
            await conn.execute(schema_before("team_members"))
            before = await _old_data(conn)
        finally:
            await conn.close()

        env = monoduty_env(MONODUTY_DATABASE_URL=url)
        for _ in range(2):  # and again: idempotent
            result = monoduty("migrate", env=env)
            assert result.stdout.strip() == "schema applied", result.stderr

        conn = await db.connect(url)
        try:
            assert await _snapshot(conn) == before
            teams = await conn.fetch(
                "SELECT t.name, t.personal_user_id, m.user_id, m.role FROM teams t"
                " JOIN team_members m ON m.team_id = t.id ORDER BY t.name"
            )
            users = {r[0]: (r[1], r[2]) for r in before["users"]}
            assert len(teams) == len(users) == 2  # one team each, with one member, after two runs
            for team in teams:
                assert team["personal_user_id"] == team["user_id"] and team["role"] == "owner"
                email, name = users[team["user_id"]]
                assert team["name"] == (name or email)
            # incidents are in their webhook's team; the next one is numbered after the old ones
            moved = await conn.fetchval(
                "SELECT count(*) FROM incidents i JOIN webhooks w ON w.id = i.webhook_id"
                " JOIN teams t ON t.id = i.team_id AND t.id = w.team_id AND t.personal_user_id = i.user_id"
            )
            assert moved == 4
            webhook_id = before["webhooks"][0][0]
            parsed = parse_alert(b'{"title": "new", "dedup_key": "new"}', "application/json")
            await lifecycle.record_alert(
                conn, uuid.uuid4(), webhook_id, parsed, received_at=datetime.now(UTC)
            )
            number = await conn.fetchval("SELECT number FROM incidents WHERE dedup_key = 'new'")
            assert number == 3
            # and a user made now gets a team with the account
            new = await create_user(conn, "new@example.com")
            owner = await conn.fetchval("SELECT role FROM team_members WHERE user_id = $1", new.id)
            assert owner == "owner"
        finally:
            await conn.close()
