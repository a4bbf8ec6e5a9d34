"""Users from before contact methods get, from `monoduty migrate`, the same defaults a new user gets:
their profile's email (verified: it is their login), phone (SMS and CALL, unverified) and push topic,
with push and email at 0 minutes, SMS at 1, call at 3. Once: a method deleted later stays deleted."""

from __future__ import annotations

import os
import uuid

import asyncpg
import pytest

from engine import db
from engine.oncall.notification_rules import SKIP_UNVERIFIED, notification_plan
from tests.support.migrations import schema_before
from tests.support.processes import monoduty, monoduty_env
from tests.support.services import Services, database_named


@pytest.mark.slow  # over 5 s: run with the slow tests
async def test_existing_users_get_default_contact_methods_and_rules_once(services: Services) -> None:
    admin = await asyncpg.connect(services.database_url)
    name = f"monoduty_contacts_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = database_named(services.database_url, name)
    full, plain = uuid.uuid4(), uuid.uuid4()
    try:
        conn = await asyncpg.connect(url)
        try:
            await conn.execute(schema_before("contact_methods"))
            await conn.execute(
                "INSERT INTO users (id, email, phone, push_topic) VALUES"
                " ($1, 'full@example.com', '+14155550161', 'full-topic'),"
                " ($2, 'plain@example.com', NULL, NULL)",
                full,
                plain,
            )
        finally:
            await conn.close()

        env = monoduty_env(MONODUTY_DATABASE_URL=url)
        for _ in range(2):  # and again: idempotent, nothing doubled
            result = monoduty("migrate", env=env)
            assert result.stdout.strip() == "schema applied", result.stderr

        conn = await db.connect(url)
        try:
            plan = [
                (p.delay_minutes, p.type, p.target, p.skipped_reason)
                for p in await notification_plan(conn, full)
            ]
            assert sorted(plan) == [
                (0, "EMAIL", "full@example.com", None),
                (0, "PUSH_NOTIF", "full-topic", None),
                (1, "SMS", "+14155550161", SKIP_UNVERIFIED),
                (3, "CALL", "+14155550161", SKIP_UNVERIFIED),
            ]
            assert [(p.delay_minutes, p.type) for p in await notification_plan(conn, plain)] == [(0, "EMAIL")]
            verified = await conn.fetch(
                "SELECT type FROM contact_methods WHERE user_id = $1 AND verified_at IS NOT NULL", full
            )
            assert [r["type"] for r in verified] == ["EMAIL"]
            await conn.execute("DELETE FROM contact_methods WHERE user_id = $1 AND type = 'CALL'", full)
        finally:
            await conn.close()

        monoduty("migrate", env=env)
        conn = await db.connect(url)
        try:  # the user's choice stands: migrate does not bring the CALL method back
            assert [p.type for p in await notification_plan(conn, full) if p.type == "CALL"] == []
        finally:
            await conn.close()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
