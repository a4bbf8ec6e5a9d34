"""The escalation engine against PostgreSQL with the time passed in (the clock a worker would
inject): a policy's whole run, minutes apart, in milliseconds; skips and their reasons; schedules;
acknowledge; two sweeps at once."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
from aiohttp.test_utils import TestClient

from engine.incidents import actions
from engine.oncall import escalation
from tests.support.escalation import new_policy, open_incident, pages_of, step, verify_phones
from tests.support.factories import WEBHOOK, Account, create, new_account
from tests.support.schedules import create_schedule, rotation
from tests.support.teams import add_member, new_team

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def minutes(n: float) -> datetime:
    return T0 + timedelta(minutes=n)


async def sweep(pool: asyncpg.Pool, at: datetime) -> escalation.Swept:
    async with pool.acquire() as conn:
        return await escalation.sweep(conn, at)


async def events(pool: asyncpg.Pool, incident_id: uuid.UUID) -> list[tuple[str, str]]:
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT kind, text FROM incident_events WHERE incident_id = $1 ORDER BY id", incident_id
        )
    return [(r["kind"], r["text"]) for r in rows]


async def sent_to(pool: asyncpg.Pool, incident_id: uuid.UUID) -> list[tuple[str, str]]:
    """(channel, target) of the incident's page deliveries, oldest first."""
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT channel, target FROM deliveries WHERE incident_id = $1 AND kind = 'page' "
            "ORDER BY created_at, channel",
            incident_id,
        )
    return [(r["channel"], r["target"]) for r in rows]


async def resolve(pool: asyncpg.Pool, account: Account, *incidents: uuid.UUID) -> None:
    """Leave nothing escalating for the next tests' workers (the database is the session's)."""
    async with pool.acquire() as conn:
        for incident_id in incidents:
            await actions.resolve(conn, account.user.id, incident_id, T0)


async def team_of(client: TestClient, admin: Account, *people: Account) -> str:
    team = await new_team(client, admin)
    for person in people:
        await add_member(client, admin, team["id"], person, "responder")
    return str(team["id"])


async def test_a_policy_runs_its_steps_repeats_them_and_is_exhausted(
    client: TestClient, pool: asyncpg.Pool, account: Account
) -> None:
    primary, backup = await new_account(pool), await new_account(pool)
    team_id = await team_of(client, account, primary, backup)
    policy = await new_policy(client, account, step(5, primary), step(5, backup), repeat=1, team_id=team_id)
    webhook = await create(
        client, account, {**WEBHOOK, "teamId": team_id, "escalationPolicyId": policy["id"]}
    )
    incident = await open_incident(pool, webhook, T0)

    await sweep(pool, T0)
    assert await sent_to(pool, incident) == [("EMAIL", primary.user.email)]  # email at 0; phone unverified
    await sweep(pool, minutes(4.9))
    assert len(await sent_to(pool, incident)) == 1
    await sweep(pool, minutes(5))
    await sweep(pool, minutes(10))
    await sweep(pool, minutes(15))
    await sweep(pool, minutes(20))
    await sweep(pool, minutes(600))
    assert await sent_to(pool, incident) == [
        ("EMAIL", primary.user.email),
        ("EMAIL", backup.user.email),
        ("EMAIL", primary.user.email),
        ("EMAIL", backup.user.email),
    ]
    kinds = [kind for kind, _ in await events(pool, incident)]
    assert kinds.count("escalated") == 4
    assert kinds[-1] == "escalation_exhausted"
    escalated = [text for kind, text in await events(pool, incident) if kind == "escalated"]
    assert escalated[2] == f"step 1 of 2 (repeat 1 of 1): paged {primary.user.email}"
    # An unverified number is not paged, and the timeline says why.
    skipped = [text for kind, text in await events(pool, incident) if kind == "page_skipped"]
    assert f"{primary.user.email}: SMS +14155550100 skipped: phone number not verified" in skipped
    async with pool.acquire() as conn:
        row = await conn.fetchrow(
            "SELECT next_escalation_at, escalation_loop FROM incidents WHERE id = $1", incident
        )
        assigned = await escalation.assigned_to(conn, incident)
    assert row["next_escalation_at"] is None and row["escalation_loop"] == 1
    assert [a["user_id"] for a in assigned] == [backup.user.id]
    await resolve(pool, account, incident)


async def test_acknowledge_cancels_the_pending_pages_and_stops_the_steps(
    client: TestClient, pool: asyncpg.Pool, account: Account
) -> None:
    primary, backup = await new_account(pool), await new_account(pool)
    await verify_phones(pool, primary)
    team_id = await team_of(client, account, primary, backup)
    policy = await new_policy(client, account, step(5, primary), step(5, backup), team_id=team_id)
    webhook = await create(
        client, account, {**WEBHOOK, "teamId": team_id, "escalationPolicyId": policy["id"]}
    )
    incident = await open_incident(pool, webhook, T0)
    await sweep(pool, T0)
    assert [p["status"] for p in await pages_of(pool, incident)] == [
        "sent",
        "pending",
        "pending",
    ]  # SMS 1, call 3
    async with pool.acquire() as conn:
        await actions.acknowledge(conn, account.user.id, incident, minutes(0.5))
    pages = await pages_of(pool, incident)
    assert [(p["status"], p["reason"]) for p in pages[1:]] == [("cancelled", "incident acknowledged")] * 2
    for later in (1, 3, 5, 60):
        await sweep(pool, minutes(later))
    assert await sent_to(pool, incident) == [("EMAIL", primary.user.email)]
    assert [(kind, text) for kind, text in await events(pool, incident) if kind == "escalated"] == [
        ("escalated", f"step 1 of 2: paged {primary.user.email}")
    ]
    await resolve(pool, account, incident)


async def test_a_schedule_target_pages_whoever_is_on_call_and_an_empty_one_moves_on_at_once(
    client: TestClient, pool: asyncpg.Pool, account: Account
) -> None:
    on_call, backup = await new_account(pool), await new_account(pool)
    team_id = await team_of(client, account, on_call, backup)
    staffed = await create_schedule(
        client, account, teamId=team_id, rotations=[rotation([str(on_call.user.id)])]
    )
    # Active only on Sundays: nobody is on call at T0, a Monday.
    empty = await create_schedule(
        client,
        account,
        teamId=team_id,
        rotations=[
            rotation(
                [str(on_call.user.id)],
                shiftUnit="days",
                activeHours={"weekdays": [6], "start": "09:00", "end": "17:00"},
            )
        ],
    )
    schedule = {"delayMinutes": 5, "targets": [{"type": "schedule", "id": staffed["id"]}]}
    nobody = {"delayMinutes": 5, "targets": [{"type": "schedule", "id": empty["id"]}]}
    policy = await new_policy(client, account, nobody, schedule, step(5, backup), team_id=team_id)
    webhook = await create(
        client, account, {**WEBHOOK, "teamId": team_id, "escalationPolicyId": policy["id"]}
    )
    incident = await open_incident(pool, webhook, T0)

    swept = await sweep(pool, T0)
    assert swept.steps == 2  # the empty schedule's step, then at once the next
    assert await sent_to(pool, incident) == [("EMAIL", on_call.user.email)]
    assert ("page_skipped", f"step 1: schedule {empty['name']} has nobody on call") in await events(
        pool, incident
    )


async def test_two_sweeps_at_once_run_each_step_once(
    client: TestClient, pool: asyncpg.Pool, account: Account
) -> None:
    # (that they send each page once, in one message per person: tests/test_page_bundles.py)
    people = [await new_account(pool) for _ in range(3)]
    team_id = await team_of(client, account, *people)
    policy = await new_policy(client, account, step(5, *people), team_id=team_id)
    webhook = await create(
        client, account, {**WEBHOOK, "teamId": team_id, "escalationPolicyId": policy["id"]}
    )
    incidents = [await open_incident(pool, webhook, T0, key=f"k{n}") for n in range(40)]

    await asyncio.gather(*(sweep(pool, T0) for _ in range(4)))
    async with pool.acquire() as conn:
        steps = await conn.fetchval(
            "SELECT count(*) FROM incident_events WHERE incident_id = ANY($1) AND kind = 'escalated'",
            incidents,
        )
        pages = await conn.fetchval("SELECT count(*) FROM pages WHERE incident_id = ANY($1)", incidents)
    assert steps == 40  # each incident's first step ran once
    assert pages == 40 * 3 * 3  # and planned each person's three rules once (email, SMS, call)
    await resolve(pool, account, *incidents)
