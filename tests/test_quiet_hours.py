"""Quiet hours: a person's pages of incidents quieter than their chosen severity wait while their
quiet hours last (on their own clock, DST included) and reach them as one message when the quiet
hours end; critical ones go through at once. Set through /api/me/quiet-hours.

The rule's arithmetic on its own, then the escalation engine with the time passed in, then the API."""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from engine.alerts import lifecycle
from engine.alerts.payloads import parse_alert
from engine.incidents import actions
from engine.oncall import escalation
from engine.oncall.quiet_hours import quiet_until
from engine.settings import Settings
from tests.support.clock import ManualClock
from tests.support.escalation import GAP_5S, deliveries_to, new_policy, step, worker_running
from tests.support.factories import WEBHOOK, Account, create, make_client, new_account, path_of
from tests.support.processes import wait_until
from tests.support.teams import add_member, new_team

BERLIN = ZoneInfo("Europe/Berlin")
NIGHT = (time(22, 0), time(7, 0))
# 2027-01-15, winter: Berlin is UTC+1, so 02:00 there is 01:00 UTC and 07:00 is 06:00 UTC.
T0 = datetime(2027, 1, 15, 1, 0, tzinfo=UTC)
END = datetime(2027, 1, 15, 6, 0, tzinfo=UTC)


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize(
    ("now", "hours", "until"),
    [
        # Overnight hours: inside before and after midnight, outside by day; the end is the next 07:00.
        ("2027-01-14T20:59:59", NIGHT, None),  # 21:59:59 Berlin
        ("2027-01-14T21:00:00", NIGHT, "2027-01-15T06:00:00"),  # 22:00 Berlin: it starts
        ("2027-01-15T01:00:00", NIGHT, "2027-01-15T06:00:00"),  # 02:00 Berlin
        ("2027-01-15T05:59:59", NIGHT, "2027-01-15T06:00:00"),
        ("2027-01-15T06:00:00", NIGHT, None),  # 07:00 Berlin: over
        # Same-day hours (01:00-06:00).
        ("2027-01-15T01:00:00", (time(1, 0), time(6, 0)), "2027-01-15T05:00:00"),
        ("2027-01-15T05:00:00", (time(1, 0), time(6, 0)), None),
        # Spring forward (29 March 2026, 02:00 CET -> 03:00 CEST): a night one hour shorter, ending
        # at 07:00 summer time, 05:00 UTC.
        ("2026-03-29T00:30:00", NIGHT, "2026-03-29T05:00:00"),  # 01:30 CET
        ("2026-03-29T01:30:00", NIGHT, "2026-03-29T05:00:00"),  # 03:30 CEST
        # Fall back (25 October 2026, 03:00 CEST -> 02:00 CET): a night one hour longer, ending at
        # 07:00 winter time, 06:00 UTC; 02:30 happens twice and is quiet both times.
        ("2026-10-25T00:30:00", NIGHT, "2026-10-25T06:00:00"),  # 02:30 CEST
        ("2026-10-25T01:30:00", NIGHT, "2026-10-25T06:00:00"),  # 02:30 CET
        ("2026-10-25T05:30:00", NIGHT, "2026-10-25T06:00:00"),  # 06:30 CET
        # An end in the hour the clocks skip ends when they jump (02:30 -> 03:00 CEST, 01:00 UTC).
        ("2026-03-29T00:45:00", (time(1, 0), time(2, 30)), "2026-03-29T01:00:00"),
        # An end in the repeated hour ends at its first time; read the second time it is over.
        ("2026-10-25T00:15:00", (time(1, 0), time(2, 30)), "2026-10-25T00:30:00"),
        ("2026-10-25T01:15:00", (time(1, 0), time(2, 30)), None),
    ],
)
def test_quiet_until_follows_the_persons_clock_across_dst(
    now: str, hours: tuple[time, time], until: str | None
) -> None:
    assert quiet_until(*hours, BERLIN, utc(now)) == (utc(until) if until else None)


async def sweep(pool: asyncpg.Pool, at: datetime) -> escalation.Swept:
    async with pool.acquire() as conn:
        return await escalation.sweep(conn, at, throttles=GAP_5S)


async def alert(
    pool: asyncpg.Pool, webhook: dict[str, Any], at: datetime, key: str, severity: str
) -> uuid.UUID:
    """An alert stored as process_alert stores it, at ``at``: its incident."""
    body = json.dumps({"title": f"{key} {severity}", "dedup_key": key, "severity": severity}).encode()
    alert_id = uuid.uuid4()
    async with pool.acquire() as conn:
        await lifecycle.record_alert(
            conn,
            alert_id,
            uuid.UUID(webhook["id"]),
            parse_alert(body, "application/json"),
            received_at=at,
            now=at,
        )
        incident_id = await conn.fetchval("SELECT incident_id FROM alerts WHERE id = $1", alert_id)
    assert isinstance(incident_id, uuid.UUID)
    return incident_id


async def night_shift(client: TestClient, admin: Account, person: Account, **quiet: str) -> dict[str, Any]:
    """A webhook whose policy pages ``person`` (email at once), who keeps quiet hours 22:00-07:00
    in Berlin."""
    team = await new_team(client, admin)
    await add_member(client, admin, team["id"], person, "responder")
    policy = await new_policy(client, admin, step(30, person), team_id=team["id"])
    body = {"start": "22:00", "end": "07:00", "timeZone": "Europe/Berlin", **quiet}
    resp = await client.put("/api/me/quiet-hours", json=body, headers=person.headers)
    assert resp.status == 200, await resp.text()
    return await create(client, admin, {**WEBHOOK, "teamId": team["id"], "escalationPolicyId": policy["id"]})


async def timeline(client: TestClient, account: Account, incident_id: uuid.UUID) -> list[dict[str, Any]]:
    resp = await client.get(f"/api/incidents/{incident_id}", headers=account.headers)
    return list((await resp.json())["incident"]["timeline"])


async def resolve(pool: asyncpg.Pool, account: Account, incidents: list[uuid.UUID]) -> None:
    """Leave nothing escalating for the next tests' sweeps (the database is the session's)."""
    async with pool.acquire() as conn:
        for incident_id in incidents:
            if await conn.fetchval("SELECT status FROM incidents WHERE id = $1", incident_id) != "resolved":
                await actions.resolve(conn, account.user.id, incident_id, END)


async def test_a_warning_at_two_waits_a_critical_goes_at_once_and_the_end_brings_one_digest(
    client: TestClient, pool: asyncpg.Pool, account: Account
) -> None:
    ana = await new_account(pool)
    webhook = await night_shift(client, account, ana)
    email = ana.user.email

    warning = await alert(pool, webhook, T0, "disk", "warning")  # 02:00 in Berlin
    swept = await sweep(pool, T0)
    assert await deliveries_to(pool, email) == []
    assert any(w.at == END and w.job_id.startswith("quiet:") for w in swept.wake_ups)
    held = [e for e in await timeline(client, account, warning) if e["kind"] == "page_held"]
    assert [e["text"] for e in held] == [
        f"page of {email} held: quiet hours until 07:00 Europe/Berlin (2027-01-15 06:00 UTC)"
    ]

    critical = await alert(pool, webhook, T0 + timedelta(minutes=5), "db", "critical")
    await sweep(pool, T0 + timedelta(minutes=5))
    assert [(d["kind"], d["incidents"]) for d in await deliveries_to(pool, email)] == [("page", [critical])]

    # Two more quiet ones in the night; one of them is acknowledged before the morning.
    later = await alert(pool, webhook, T0 + timedelta(hours=1), "cpu", "info")
    handled = await alert(pool, webhook, T0 + timedelta(hours=2), "net", "error")
    await sweep(pool, T0 + timedelta(hours=2))
    async with pool.acquire() as conn:
        await actions.acknowledge(conn, account.user.id, handled, T0 + timedelta(hours=3))
    await sweep(pool, END - timedelta(seconds=1))
    assert len(await deliveries_to(pool, email)) == 1

    await sweep(pool, END)
    sent = await deliveries_to(pool, email)
    assert [(d["kind"], d["incidents"]) for d in sent[1:]] == [("bundle", sorted([warning, later]))]
    async with pool.acquire() as conn:
        attempt = await lifecycle.start_attempt(conn, sent[1]["id"])
    assert attempt is not None
    assert (
        attempt.message.body.splitlines()[0]
        == "2 incidents on Production Alerts waited for the end of your quiet hours:"
    )
    paged = [e for e in await timeline(client, account, warning) if e["delivery"]]
    assert [e["text"] for e in paged] == [f"EMAIL to {email} (one message for 2 incidents)"]
    await resolve(pool, account, [warning, critical, later, handled])


# The deliveries that reached a target, each with how many incidents' pages it carried.
DELIVERED = """
SELECT d.kind, count(p.id) AS incidents FROM deliveries d JOIN pages p ON p.delivery_id = d.id
WHERE d.target = $1 AND d.status = 'delivered' GROUP BY d.id, d.kind ORDER BY min(p.sent_at)
"""
HELD = "SELECT count(*) FROM pages WHERE user_id = $1 AND quiet_until = $2 AND status = 'pending'"


async def test_a_real_worker_holds_the_night_and_sends_the_digest_when_the_persons_clock_says_seven(
    settings: Settings, pool: asyncpg.Pool, account: Account
) -> None:
    clock = ManualClock(T0)  # 02:00 in Berlin, for the API and the worker alike
    fast = settings.with_(escalation_sweep_seconds=1)
    client = await make_client(fast, clock=clock)
    try:
        ana = await new_account(pool)
        webhook = await night_shift(client, account, ana)
        for key, severity in (("disk", "warning"), ("db", "critical"), ("cpu", "warning")):
            body = {"title": f"{key} {severity}", "dedup_key": key, "severity": severity}
            assert (await client.post(path_of(webhook), json=body)).status == 202

        async def delivered() -> list[tuple[str, int]]:
            async with pool.acquire() as conn:
                rows = await conn.fetch(DELIVERED, ana.user.email)
            return [(r["kind"], r["incidents"]) for r in rows]

        async def held() -> int:
            async with pool.acquire() as conn:
                return int(await conn.fetchval(HELD, ana.user.id, END))

        async with worker_running(fast, clock):
            await wait_until(lambda: _at_least(held, 2), "both warnings held until 07:00")
            assert await wait_until(delivered, "the critical page") == [("page", 1)]
            clock.advance((END - T0).total_seconds())
            await wait_until(lambda: _at_least(lambda: _count(delivered), 2), "the morning digest")
        assert await delivered() == [("page", 1), ("bundle", 2)]
        async with pool.acquire() as conn:
            incidents = await conn.fetch(
                "SELECT id FROM incidents WHERE webhook_id = $1", uuid.UUID(webhook["id"])
            )
        await resolve(pool, account, [r["id"] for r in incidents])
    finally:
        await client.close()


async def _count(read: Callable[[], Awaitable[list[tuple[str, int]]]]) -> int:
    return len(await read())


async def _at_least(read: Callable[[], Awaitable[int]], n: int) -> bool:
    return await read() >= n


async def test_min_severity_chooses_what_goes_through_and_a_louder_repeat_is_paged_at_once(
    client: TestClient, pool: asyncpg.Pool, account: Account
) -> None:
    ana = await new_account(pool)
    webhook = await night_shift(client, account, ana, minSeverity="warning")
    email = ana.user.email

    info = await alert(pool, webhook, T0, "cpu", "info")
    warning = await alert(pool, webhook, T0, "disk", "warning")
    await sweep(pool, T0)
    assert [d["incidents"] for d in await deliveries_to(pool, email)] == [[warning]]

    # The info incident turns critical at 03:00: its held page is decided again, and goes.
    await alert(pool, webhook, T0 + timedelta(hours=1), "cpu", "critical")
    await sweep(pool, T0 + timedelta(hours=1))
    assert [d["incidents"] for d in await deliveries_to(pool, email)] == [[warning], [info]]
    await sweep(pool, END)
    assert len(await deliveries_to(pool, email)) == 2  # nothing was left for the morning
    await resolve(pool, account, [info, warning])


async def test_removing_quiet_hours_pages_what_they_held_and_other_people_are_not_held(
    client: TestClient, pool: asyncpg.Pool, account: Account
) -> None:
    ana, bob = await new_account(pool), await new_account(pool)
    team = await new_team(client, account)
    for person in (ana, bob):
        await add_member(client, account, team["id"], person, "responder")
    policy = await new_policy(client, account, step(30, ana, bob), team_id=team["id"])
    webhook = await create(
        client, account, {**WEBHOOK, "teamId": team["id"], "escalationPolicyId": policy["id"]}
    )
    body = {"start": "22:00", "end": "07:00", "timeZone": "Europe/Berlin"}
    assert (await client.put("/api/me/quiet-hours", json=body, headers=ana.headers)).status == 200

    warning = await alert(pool, webhook, T0, "disk", "warning")
    await sweep(pool, T0)
    assert await deliveries_to(pool, ana.user.email) == []
    assert [d["incidents"] for d in await deliveries_to(pool, bob.user.email)] == [[warning]]

    resp = await client.delete("/api/me/quiet-hours", headers=ana.headers)
    assert (resp.status, await resp.json()) == (200, {"success": True, "deleted": True})
    async with pool.acquire() as conn:
        due = await conn.fetchval(
            "SELECT due_at FROM pages WHERE user_id = $1 AND status = 'pending'", ana.user.id
        )
    await sweep(pool, max(due, T0))
    assert [d["incidents"] for d in await deliveries_to(pool, ana.user.email)] == [[warning]]
    resp = await client.delete("/api/me/quiet-hours", headers=ana.headers)
    assert resp.status == 404
    assert (await resp.json())["code"] == "QUIET_HOURS_NOT_FOUND"
    await resolve(pool, account, [warning])


async def test_quiet_hours_through_the_api(
    client: TestClient, account: Account, other_account: Account
) -> None:
    url = "/api/me/quiet-hours"
    resp = await client.get(url, headers=account.headers)
    assert (resp.status, await resp.json()) == (200, {"success": True, "quiet_hours": None})

    resp = await client.put(
        url, json={"start": "22:00", "end": "07:00", "timeZone": "Europe/Berlin"}, headers=account.headers
    )
    assert resp.status == 200, await resp.text()
    shown = (await resp.json())["quiet_hours"]
    assert {k: shown[k] for k in ("start", "end", "time_zone", "min_severity")} == {
        "start": "22:00",
        "end": "07:00",
        "time_zone": "Europe/Berlin",
        "min_severity": "critical",
    }
    assert set(shown) == {"start", "end", "time_zone", "min_severity", "quiet_until", "updated_at"}

    resp = await client.patch(url, json={"minSeverity": "error", "end": "06:30"}, headers=account.headers)
    assert resp.status == 200, await resp.text()
    shown = (await resp.json())["quiet_hours"]
    assert (shown["start"], shown["end"], shown["min_severity"]) == ("22:00", "06:30", "error")
    assert (await (await client.get(url, headers=account.headers)).json())["quiet_hours"]["end"] == "06:30"
    resp = await client.patch(url, json={"timeZone": "Europe/Nowhere"}, headers=account.headers)
    assert resp.status == 400
    assert (await resp.json())["error"].startswith("timeZone must be an IANA time zone name")
    # Another user's quiet hours are their own.
    assert (await (await client.get(url, headers=other_account.headers)).json())["quiet_hours"] is None
    assert (await client.get(url)).status == 401


@pytest.mark.parametrize(
    ("method", "body", "field"),
    [
        ("PUT", {"start": "25:00", "end": "07:00", "timeZone": "Europe/Berlin"}, "start"),
        ("PUT", {"start": "22:00", "end": "7:00", "timeZone": "Europe/Berlin"}, "end"),
        ("PUT", {"start": "22:00", "end": 7, "timeZone": "Europe/Berlin"}, "end"),
        ("PUT", {"start": "22:00", "end": "22:00", "timeZone": "Europe/Berlin"}, "end"),
        ("PUT", {"start": "22:00", "end": "07:00", "timeZone": "Mars/Olympus"}, "timeZone"),
        ("PUT", {"start": "22:00", "end": "07:00"}, "timeZone"),
        ("PUT", {"end": "07:00", "timeZone": "UTC"}, "start"),
        ("PUT", {"start": "22:00", "end": "07:00", "timeZone": "UTC", "minSeverity": "loud"}, "minSeverity"),
        ("PUT", {"start": "22:00", "end": "07:00", "timeZone": "UTC", "quiet": True}, "quiet"),
        ("PATCH", {"timeZone": "Europe/Berlin"}, "start"),  # with none set yet, PATCH is a PUT
    ],
)
async def test_bad_quiet_hours_are_a_400_naming_the_field(
    client: TestClient, account: Account, method: str, body: dict[str, Any], field: str
) -> None:
    resp = await client.request(method, "/api/me/quiet-hours", json=body, headers=account.headers)
    assert resp.status == 400, await resp.text()
    error = await resp.json()
    assert error["success"] is False
    assert error["error"].startswith(f"{field} ") or error["error"] == f"unknown field: {field}", error
    assert (await (await client.get("/api/me/quiet-hours", headers=account.headers)).json())[
        "quiet_hours"
    ] is None
