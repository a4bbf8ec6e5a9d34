"""Channel targets in escalation steps: the team's shared destination (a mailing list, a team push
topic) gets one message when its step runs, assigns nobody, is cancelled by an acknowledge, hears of
the resolve, and is bundled per (channel, target) like a person's contact method.

The engine with the time passed in (as tests/test_escalation_engine.py), then a real worker and the
local providers; the validation of channel targets is tests/test_escalation_api.py's."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from aiohttp.test_utils import TestClient

from engine import db
from engine.alerts import lifecycle
from engine.incidents import actions
from engine.oncall import escalation
from engine.settings import Settings
from tests.support.escalation import (
    GAP_5S,
    channel,
    deliveries_to,
    new_policy,
    open_incident,
    pages_of,
    step,
    verify_phones,
    worker_running,
)
from tests.support.factories import WEBHOOK, Account, create, new_account, path_of
from tests.support.migrations import schema_before, scratch_database
from tests.support.processes import wait_until
from tests.support.providers import FakeProviders
from tests.support.services import Services
from tests.support.teams import add_member, new_team

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def minutes(n: float) -> datetime:
    return T0 + timedelta(minutes=n)


async def sweep(pool: asyncpg.Pool, at: datetime) -> escalation.Swept:
    async with pool.acquire() as conn:
        return await escalation.sweep(conn, at, throttles=GAP_5S)


def team_list() -> str:
    """A mailing list of its own per test: the database is the session's."""
    return f"ops-{uuid.uuid4().hex[:8]}@example.com"


async def policy_webhook(
    client: TestClient, admin: Account, *steps: dict[str, Any], people: tuple[Account, ...] = ()
) -> dict[str, Any]:
    """A webhook of a new team of ``admin`` and ``people`` (responders) escalating under ``steps``."""
    team = await new_team(client, admin)
    for person in people:
        await add_member(client, admin, team["id"], person, "responder")
    policy = await new_policy(client, admin, *steps, team_id=team["id"])
    return await create(client, admin, {**WEBHOOK, "teamId": team["id"], "escalationPolicyId": policy["id"]})


async def resolve(pool: asyncpg.Pool, account: Account, *incidents: uuid.UUID) -> list[uuid.UUID]:
    """Resolve the incidents (leaving nothing escalating for the next tests); the notices planned."""
    notices: list[uuid.UUID] = []
    async with pool.acquire() as conn:
        for incident_id in incidents:
            notices += await actions.resolve(conn, account.user.id, incident_id, minutes(60))
    return notices


async def test_a_channel_target_gets_one_message_when_its_step_runs_and_assigns_nobody(
    client: TestClient, pool: asyncpg.Pool, account: Account
) -> None:
    primary = await new_account(pool)
    await verify_phones(pool, primary)  # SMS at 1 minute, a call at 3
    ops, topic = team_list(), f"ops-{uuid.uuid4().hex[:8]}"
    webhook = await policy_webhook(
        client,
        account,
        step(0.5, primary),
        step(5, channel("EMAIL", ops), channel("PUSH_NOTIF", topic)),
        people=(primary,),
    )
    incident = await open_incident(pool, webhook, T0)

    await sweep(pool, T0)
    assert await deliveries_to(pool, ops) == []
    await sweep(pool, minutes(0.5))
    for target in (ops, topic):
        assert [(d["kind"], d["incidents"]) for d in await deliveries_to(pool, target)] == [
            ("page", [incident])
        ]
    # The step waits its delay like any (it reached someone), and its targets are paged once.
    for later in (0.5, 1, 3, 4):
        await sweep(pool, minutes(later))
    assert len(await deliveries_to(pool, ops)) == len(await deliveries_to(pool, topic)) == 1
    async with pool.acquire() as conn:
        next_at = await conn.fetchval("SELECT next_escalation_at FROM incidents WHERE id = $1", incident)
        assigned = await escalation.assigned_to(conn, incident)
    assert next_at == minutes(5.5)
    # A list cannot acknowledge: the incident stays with the primary, whose SMS and call still went.
    assert [a["user_id"] for a in assigned] == [primary.user.id]
    mine = [
        (p["channel"], p["status"]) for p in await pages_of(pool, incident) if p["user_id"] == primary.user.id
    ]
    assert mine == [("EMAIL", "sent"), ("SMS", "sent"), ("CALL", "sent")]

    resp = await client.get(f"/api/incidents/{incident}", headers=account.headers)
    timeline = (await resp.json())["incident"]["timeline"]
    escalated = [e["text"] for e in timeline if e["kind"] == "escalated"]
    assert escalated[1] == f"step 2 of 2: paged EMAIL {ops}, PUSH_NOTIF {topic}"
    to_list = [e for e in timeline if e["delivery"] and e["delivery"]["target"] == ops]
    assert [(e["kind"], e["text"], e["paged_user_id"]) for e in to_list] == [
        ("page", f"EMAIL to {ops}", None)
    ]
    await resolve(pool, account, incident)


async def test_acknowledge_cancels_a_channel_page_not_yet_sent(
    client: TestClient, pool: asyncpg.Pool, account: Account
) -> None:
    ops = team_list()
    webhook = await policy_webhook(client, account, step(5, channel("EMAIL", ops)))
    first = await open_incident(pool, webhook, T0, key="db")
    await sweep(pool, T0)
    assert len(await deliveries_to(pool, ops)) == 1

    # 2 s later, inside the list's 5 s window: the second incident's page waits for it.
    second = await open_incident(pool, webhook, T0 + timedelta(seconds=2), key="disk")
    await sweep(pool, T0 + timedelta(seconds=2))
    assert [p["status"] for p in await pages_of(pool, second)] == ["pending"]
    async with pool.acquire() as conn:
        await actions.acknowledge(conn, account.user.id, second, T0 + timedelta(seconds=3))
    assert [(p["status"], p["reason"]) for p in await pages_of(pool, second)] == [
        ("cancelled", "incident acknowledged")
    ]
    await sweep(pool, T0 + timedelta(seconds=5))
    assert [d["incidents"] for d in await deliveries_to(pool, ops)] == [[first]]
    resp = await client.get(f"/api/incidents/{second}", headers=account.headers)
    timeline = (await resp.json())["incident"]["timeline"]
    unsent = [(e["text"], e["paged_user_id"]) for e in timeline if e.get("page")]
    assert unsent == [(f"EMAIL to {ops}: cancelled (incident acknowledged)", None)]

    # A page already made a delivery re-checks its incident when the deliver job starts it.
    third = await open_incident(pool, webhook, minutes(1), key="api")
    await sweep(pool, minutes(1))
    made = (await deliveries_to(pool, ops))[-1]
    assert made["incidents"] == [third]
    async with pool.acquire() as conn:
        await actions.acknowledge(conn, account.user.id, third, minutes(1))
        assert await lifecycle.start_attempt(conn, made["id"]) is None
        status = await conn.fetchval("SELECT status FROM deliveries WHERE id = $1", made["id"])
    assert status == "cancelled"
    await resolve(pool, account, first, second, third)


async def test_the_channel_pages_of_several_incidents_are_one_message_to_the_target(
    client: TestClient, pool: asyncpg.Pool, account: Account
) -> None:
    ops = team_list()
    webhook = await policy_webhook(client, account, step(5, channel("EMAIL", ops)))
    incidents = [await open_incident(pool, webhook, T0, key=key) for key in ("db", "disk")]

    await sweep(pool, T0)
    (bundle,) = await deliveries_to(pool, ops)
    assert (bundle["kind"], bundle["incidents"]) == ("bundle", sorted(incidents))
    async with pool.acquire() as conn:
        attempt = await lifecycle.start_attempt(conn, bundle["id"])
        numbers = [await conn.fetchval("SELECT number FROM incidents WHERE id = $1", i) for i in incidents]
    assert attempt is not None
    assert attempt.message.title == f"2 incidents need you: #{numbers[0]} db down, #{numbers[1]} disk down"

    # The window is the list's own: what comes for it within 5 s waits and goes together.
    later = [await open_incident(pool, webhook, T0 + timedelta(seconds=s), key=f"k{s}") for s in (1, 2)]
    await sweep(pool, T0 + timedelta(seconds=2))
    assert len(await deliveries_to(pool, ops)) == 1
    await sweep(pool, T0 + timedelta(seconds=5))
    assert [(d["kind"], d["incidents"]) for d in await deliveries_to(pool, ops)] == [
        ("bundle", sorted(incidents)),
        ("bundle", sorted(later)),
    ]
    resp = await client.get(f"/api/incidents/{incidents[0]}", headers=account.headers)
    timeline = (await resp.json())["incident"]["timeline"]
    shown = [(e["text"], e["paged_user_id"]) for e in timeline if e["delivery"]]
    assert shown == [(f"EMAIL to {ops} (one message for 2 incidents)", None)]
    await resolve(pool, account, *incidents, *later)


async def test_the_resolved_notice_reaches_the_channel_targets_paged(
    client: TestClient, pool: asyncpg.Pool, account: Account
) -> None:
    primary = await new_account(pool)
    ops, topic = team_list(), f"ops-{uuid.uuid4().hex[:8]}"
    webhook = await policy_webhook(
        client,
        account,
        step(5, primary, channel("EMAIL", ops), channel("PUSH_NOTIF", topic)),
        people=(primary,),
    )
    incident = await open_incident(pool, webhook, T0)
    await sweep(pool, T0)

    notices = await resolve(pool, account, incident)
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT channel, target FROM deliveries WHERE id = ANY($1) AND kind = 'resolved'", notices
        )
    # notifyOnResolve is EMAIL and PUSH_NOTIF by default: the list, the topic and the person's email.
    assert sorted((r["channel"], r["target"]) for r in rows) == sorted(
        [("EMAIL", ops), ("PUSH_NOTIF", topic), ("EMAIL", primary.user.email)]
    )


async def test_a_worker_posts_to_the_team_topic_and_tells_it_of_the_resolve(
    live: TestClient,
    provider_settings: Settings,
    pool: asyncpg.Pool,
    account: Account,
    fake_providers: FakeProviders,
) -> None:
    topic = f"team-{uuid.uuid4().hex[:8]}"
    webhook = await policy_webhook(live, account, step(5, channel("PUSH_NOTIF", topic)))

    async with worker_running(provider_settings.with_(escalation_sweep_seconds=1)):
        resp = await live.post(path_of(webhook), json={"title": "DB down", "severity": "critical"})
        assert resp.status == 202, await resp.text()
        await wait_until(lambda: any(r.target == topic for r in fake_providers.requests), "the team's push")
        async with pool.acquire() as conn:
            incident = await conn.fetchval(
                "SELECT id FROM incidents WHERE webhook_id = $1", uuid.UUID(webhook["id"])
            )
        resp = await live.post(f"/api/incidents/{incident}/resolve", headers=account.headers)
        assert resp.status == 200, await resp.text()
        await wait_until(
            lambda: len([r for r in fake_providers.requests if r.target == topic]) == 2, "the resolved notice"
        )
    page, notice = [r for r in fake_providers.requests if r.target == topic]
    assert "DB down" in page.headers["Title"] and "RESOLVED" not in page.headers["Title"]
    assert "RESOLVED #" in notice.headers["Title"]


async def test_a_database_from_before_channel_targets_takes_their_pages_after_migrate(
    services: Services,
) -> None:
    nullable = (
        "SELECT is_nullable FROM information_schema.columns WHERE table_name = 'pages' AND column_name = $1"
    )
    async with scratch_database(services) as url:
        conn = await asyncpg.connect(url)
        try:
            await conn.execute(schema_before("pages_unique_channel"))
            assert await conn.fetchval(nullable, "user_id") == "NO"
        finally:
            await conn.close()
        for _ in range(2):  # and again: idempotent
            await db.migrate(url)
        conn = await asyncpg.connect(url)
        try:
            assert await conn.fetchval(nullable, "user_id") == "YES"
        finally:
            await conn.close()
