"""Escalation policies through the API: ``step(delay, *targets)`` is a step paging those users
(accounts) and channel targets (``channel("EMAIL", "ops@example.com")``), ``new_policy(client,
admin, *steps, repeat=0, team_id=None)`` makes a policy and returns it as the API answers;
``policy_webhook(client, owner, policy)`` a webhook that escalates under it.

How people are reached: ``add_rule`` (a contact method and a rule), ``clear_rules``,
``verify_phones``. ``worker_running(settings, clock)`` runs a real worker (cron sweeps included)
in this process; ``open_incident`` stores an alert as process_alert does, at a given time;
``incident_of``, ``pages_of`` and ``deliveries_to`` read the rows."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import asyncpg
from aiohttp.test_utils import TestClient
from arq.worker import Worker

from engine.alerts import lifecycle
from engine.alerts.payloads import parse_alert
from engine.clock import SYSTEM, Clock
from engine.oncall.throttles import Throttles
from engine.settings import Settings
from tests.support.factories import WEBHOOK, Account, create
from workers.worker import build_worker

# A 5 s gap between two messages to one contact and no sliding windows: bundling on its own, in
# seconds (the throttles themselves: tests/test_throttles.py).
GAP_5S = Throttles(5.0)


def step(delay_minutes: float, *targets: Account | dict[str, str]) -> dict[str, Any]:
    wire = [t if isinstance(t, dict) else {"type": "user", "id": str(t.user.id)} for t in targets]
    return {"delayMinutes": delay_minutes, "targets": wire}


def channel(kind: str, target: str) -> dict[str, str]:
    """A step's channel target: the team's shared destination on channel ``kind``."""
    return {"type": "channel", "channel": kind, "target": target}


async def new_policy(
    client: TestClient,
    admin: Account,
    *steps: dict[str, Any],
    repeat: int = 0,
    team_id: str | None = None,
    name: str = "Primary on call",
) -> dict[str, Any]:
    body: dict[str, Any] = {"name": name, "repeat": repeat, "steps": list(steps)}
    if team_id is not None:
        body["teamId"] = team_id
    resp = await client.post("/api/escalation-policies", json=body, headers=admin.headers)
    assert resp.status == 201, await resp.text()
    return (await resp.json())["escalation_policy"]


async def policy_webhook(client: TestClient, owner: Account, policy: dict[str, Any]) -> dict[str, Any]:
    return await create(client, owner, {**WEBHOOK, "escalationPolicyId": policy["id"]})


async def add_rule(client: TestClient, person: Account, kind: str, target: str, delay: int) -> str:
    """A contact method of ``person`` and a rule "after ``delay`` minutes, notify via it"; its id."""
    resp = await client.post(
        "/api/me/contact-methods", json={"type": kind, "target": target}, headers=person.headers
    )
    assert resp.status == 201, await resp.text()
    method_id = (await resp.json())["contact_method"]["id"]
    body = {"contactMethodId": method_id, "delayMinutes": delay}
    resp = await client.post("/api/me/notification-rules", json=body, headers=person.headers)
    assert resp.status == 201, await resp.text()
    return str(method_id)


async def clear_rules(client: TestClient, person: Account) -> None:
    """Delete every notification rule of ``person`` (their methods stay)."""
    listed = await (await client.get("/api/me/notification-rules", headers=person.headers)).json()
    for rule in listed["notification_rules"]:
        resp = await client.delete(f"/api/me/notification-rules/{rule['id']}", headers=person.headers)
        assert resp.status == 200, await resp.text()


async def verify_phones(pool: asyncpg.Pool, person: Account) -> None:
    """Mark the person's phone methods verified (the code round trip is tests/test_contact_methods.py's)."""
    async with pool.acquire() as conn:
        await conn.execute(
            "UPDATE contact_methods SET verified_at = now() WHERE user_id = $1 AND type IN ('SMS', 'CALL')",
            person.user.id,
        )


@contextlib.asynccontextmanager
async def worker_running(settings: Settings, clock: Clock = SYSTEM) -> AsyncIterator[Worker]:
    """A real arq worker (not burst: its cron sweeps run) in this process until the block ends."""
    worker = build_worker(settings, clock=clock)
    task = asyncio.create_task(worker.main())
    try:
        yield worker
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await worker.close()


async def incident_of(pool: asyncpg.Pool, alert_id: str) -> asyncpg.Record | None:
    async with pool.acquire() as conn:
        return await conn.fetchrow(
            "SELECT * FROM incidents WHERE id = (SELECT incident_id FROM alerts WHERE id = $1)",
            uuid.UUID(alert_id),
        )


async def pages_of(pool: asyncpg.Pool, incident_id: uuid.UUID) -> list[asyncpg.Record]:
    async with pool.acquire() as conn:
        return await conn.fetch(
            "SELECT * FROM pages WHERE incident_id = $1 ORDER BY due_at, created_at, channel", incident_id
        )


async def deliveries_to(pool: asyncpg.Pool, target: str) -> list[asyncpg.Record]:
    """The page and bundle deliveries to ``target``, oldest first, with the incidents of their pages."""
    async with pool.acquire() as conn:
        return await conn.fetch(
            "SELECT d.id, d.kind, d.status, d.created_at,"
            " array(SELECT p.incident_id FROM pages p WHERE p.delivery_id = d.id ORDER BY p.incident_id)"
            " AS incidents"
            " FROM deliveries d WHERE d.target = $1 AND d.kind IN ('page', 'bundle') ORDER BY d.created_at",
            target,
        )


async def open_incident(
    pool: asyncpg.Pool, webhook: dict[str, Any], now: datetime, key: str = "db"
) -> uuid.UUID:
    """An alert stored as process_alert stores it, at ``now`` on the worker's clock: its incident."""
    parsed = parse_alert(json.dumps({"title": f"{key} down", "dedup_key": key}).encode(), "application/json")
    alert_id = uuid.uuid4()
    async with pool.acquire() as conn:
        await lifecycle.record_alert(
            conn, alert_id, uuid.UUID(webhook["id"]), parsed, received_at=now, now=now
        )
        incident_id = await conn.fetchval("SELECT incident_id FROM alerts WHERE id = $1", alert_id)
    assert isinstance(incident_id, uuid.UUID)
    return incident_id
