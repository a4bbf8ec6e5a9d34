"""A database made by the schema.sql from before incidents migrates with `monoduty migrate`, keeps
its data, and then takes alerts into incidents."""

from __future__ import annotations

import json
import os
import uuid
from datetime import UTC, datetime

import asyncpg
import pytest

from engine import db
from engine.alerts import lifecycle
from engine.alerts.payloads import parse_alert
from tests.support.migrations import schema_before
from tests.support.processes import monoduty, monoduty_env
from tests.support.services import Services, database_named


@pytest.mark.slow  # over 5 s: run with the slow tests
async def test_a_database_from_before_incidents_migrates_and_opens_incidents(services: Services) -> None:
    admin = await asyncpg.connect(services.database_url)
    name = f"monoduty_migrate_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = database_named(services.database_url, name)
    try:
        conn = await asyncpg.connect(url)
        user_id, webhook_id, alert_id = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
        try:
            await conn.execute(schema_before("incidents"))
            await conn.execute("INSERT INTO users (id, email) VALUES ($1, 'old@example.com')", user_id)
            await conn.execute(
                "INSERT INTO webhooks (id, user_id, name, alias, token, notification_types, targets)"
                " VALUES ($1, $2, 'Old', 'old', 'tok-old-000000000000000000', '{EMAIL,CALL}',"
                ' \'{"email": ["a@example.com"], "call": ["+14155550124"]}\')',
                webhook_id,
                user_id,
            )
            await conn.execute(
                "INSERT INTO alerts (id, webhook_id, user_id, title, severity, format, received_at)"
                " VALUES ($1, $2, $3, 'old alert', 'error', 'generic', now())",
                alert_id,
                webhook_id,
                user_id,
            )
            await conn.execute(
                "INSERT INTO deliveries (id, alert_id, channel, target)"
                " VALUES ($1, $2, 'EMAIL', 'a@example.com')",
                uuid.uuid4(),
                alert_id,
            )
        finally:
            await conn.close()

        env = monoduty_env(MONODUTY_DATABASE_URL=url)
        for _ in range(2):  # and again: idempotent
            result = monoduty("migrate", env=env)
            assert result.stdout.strip() == "schema applied", result.stderr

        conn = await db.connect(url)
        try:
            webhook = await conn.fetchrow(
                "SELECT dedup_by, notify_on_resolve FROM webhooks WHERE id = $1", webhook_id
            )
            assert (webhook["dedup_by"], list(webhook["notify_on_resolve"])) == (
                "group",
                ["EMAIL", "PUSH_NOTIF"],
            )
            old = await conn.fetchrow(
                "SELECT kind, incident_id, status FROM deliveries WHERE alert_id = $1", alert_id
            )
            assert (old["kind"], old["incident_id"], old["status"]) == ("page", None, "pending")
            body = json.dumps({"title": "new alert", "dedup_key": "k"}).encode()
            for _ in range(2):
                new = await lifecycle.record_alert(
                    conn,
                    uuid.uuid4(),
                    webhook_id,
                    parse_alert(body, "application/json"),
                    received_at=datetime.now(UTC),
                )
                assert new is not None
            incident = await conn.fetchrow("SELECT number, alert_count, status FROM incidents")
            assert tuple(incident) == (1, 2, "triggered")
            # The old constraint now allows a cancelled page.
            await conn.execute("UPDATE deliveries SET status = 'cancelled' WHERE alert_id = $1", alert_id)
        finally:
            await conn.close()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
