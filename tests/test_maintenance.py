"""Maintenance windows as an on-call team meets them: planned work on a webhook (or a whole team)
records every alert and groups it, pages nobody, and when the window ends pages what is still open,
once. Real PostgreSQL, Redis and arq workers; the end is reached by running the workers' sweep on a
clock an hour ahead, not by waiting."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient
from arq.connections import ArqRedis

from engine.maintenance import ends
from engine.oncall import escalation
from engine.settings import Settings
from tests.support.clock import ShiftedClock
from tests.support.escalation import new_policy, open_incident, step
from tests.support.factories import WEBHOOK, Account, assert_error, create, new_account, path_of, run_worker
from tests.support.teams import new_team

AN_HOUR_LATER = ShiftedClock(3601)
CHANNELS = ["CALL", "EMAIL", "PUSH_NOTIF", "SMS"]


async def new_window(client: TestClient, admin: Account, **body: Any) -> dict[str, Any]:
    resp = await client.post(
        "/api/maintenance-windows", json={"reason": "DB upgrade", **body}, headers=admin.headers
    )
    assert resp.status == 201, await resp.text()
    return (await resp.json())["maintenance_window"]


async def end_windows(redis: ArqRedis, settings: Settings, clock: ShiftedClock = AN_HOUR_LATER) -> None:
    """Run the workers' end-of-maintenance sweep at ``clock``, then deliver what it queued."""
    await redis.enqueue_job("end_maintenance", _job_id=f"sweep-{uuid.uuid4()}")
    await run_worker(settings, clock=clock)


async def pages(pool: asyncpg.Pool, webhook: dict[str, Any]) -> list[asyncpg.Record]:
    """Every delivery for the webhook's incidents and alerts (pages and notices alike)."""
    async with pool.acquire() as conn:
        return await conn.fetch(
            "SELECT d.channel, d.status, d.kind, i.number FROM deliveries d"
            " LEFT JOIN incidents i ON i.id = d.incident_id LEFT JOIN alerts a ON a.id = d.alert_id"
            " WHERE i.webhook_id = $1 OR a.webhook_id = $1 ORDER BY d.created_at",
            uuid.UUID(webhook["id"]),
        )


async def incidents(pool: asyncpg.Pool, webhook: dict[str, Any]) -> list[asyncpg.Record]:
    async with pool.acquire() as conn:
        return await conn.fetch(
            "SELECT id, number, status, alert_count, dedup_key, maintenance_window_id FROM incidents"
            " WHERE webhook_id = $1 ORDER BY number",
            uuid.UUID(webhook["id"]),
        )


async def timeline(client: TestClient, account: Account, incident_id: uuid.UUID) -> list[tuple[str, str]]:
    resp = await client.get(f"/api/incidents/{incident_id}", headers=account.headers)
    assert resp.status == 200, await resp.text()
    return [(e["kind"], e["text"]) for e in (await resp.json())["incident"]["timeline"] if "text" in e]


async def post(client: TestClient, webhook: dict[str, Any], **alert: Any) -> None:
    resp = await client.post(path_of(webhook), json={"severity": "critical", **alert})
    assert resp.status == 202, await resp.text()


async def test_twenty_alerts_in_a_window_page_nobody_and_what_is_open_pages_once_at_the_end(
    client: TestClient, account: Account, pool: asyncpg.Pool, settings: Settings, redis: ArqRedis
) -> None:
    webhook = await create(client, account, WEBHOOK)
    window = await new_window(client, account, webhookId=webhook["id"], duration="1h")
    assert window["status"] == "active" and window["page_on_end"] is True
    shown = await (await client.get(f"/api/webhooks/{webhook['id']}", headers=account.headers)).json()
    assert shown["webhook"]["in_maintenance_until"] == window["ends_at"]

    for n in range(20):
        await post(client, webhook, title=f"Replica lag {n}", dedup_key="lag" if n % 2 else "disk")
    await run_worker(settings)

    found = await incidents(pool, webhook)
    assert [(i["dedup_key"], i["alert_count"]) for i in found] == [("disk", 10), ("lag", 10)]
    assert all(i["maintenance_window_id"] == uuid.UUID(window["id"]) for i in found)
    shown = await (await client.get(f"/api/incidents/{found[0]['id']}", headers=account.headers)).json()
    assert shown["incident"]["maintenance_window_id"] == window["id"]
    assert await pages(pool, webhook) == []  # nothing sent, nothing even planned
    disk, lag = found
    assert (
        "page_held",
        f"page held: maintenance until {window['ends_at'][:16].replace('T', ' ')} UTC, reason: DB upgrade",
    ) in await timeline(client, account, disk["id"])

    await post(client, webhook, title="Replica lag over", dedup_key="lag", resolved=True)
    await run_worker(settings)
    assert await pages(pool, webhook) == []  # no RESOLVED notice for a page nobody got

    await end_windows(redis, settings)
    await end_windows(redis, settings)  # a second sweep finds nothing more to do
    sent = await pages(pool, webhook)
    assert Counter((p["number"], p["channel"], p["status"]) for p in sent) == {
        (disk["number"], channel, "delivered"): 1 for channel in CHANNELS
    }
    assert ("page_released", "maintenance ended: paged now") in await timeline(client, account, disk["id"])
    assert "page_released" not in [kind for kind, _ in await timeline(client, account, lag["id"])]
    listed = await (await client.get("/api/maintenance-windows", headers=account.headers)).json()
    [mine] = [w for w in listed["maintenance_windows"] if w["id"] == window["id"]]
    assert mine["ended_at"] is not None


async def test_a_team_window_without_page_on_end_records_and_never_pages(
    client: TestClient, account: Account, pool: asyncpg.Pool, settings: Settings, redis: ArqRedis
) -> None:
    team = await new_team(client, account)
    webhook = await create(client, account, {**WEBHOOK, "teamId": team["id"]})
    await new_window(client, account, teamId=team["id"], duration="1h", pageOnEnd=False)
    await post(client, webhook, title="Deploy in progress")
    await run_worker(settings)

    await end_windows(redis, settings)
    [incident] = await incidents(pool, webhook)
    assert incident["status"] == "triggered"
    assert await pages(pool, webhook) == []
    assert (
        "page_released",
        "maintenance ended: not paged (the window was set not to page on its end)",
    ) in await timeline(client, account, incident["id"])


async def test_without_page_on_end_the_held_incident_is_never_paged_later_but_a_new_alert_is(
    client: TestClient, account: Account, pool: asyncpg.Pool, settings: Settings, redis: ArqRedis
) -> None:
    webhook = await create(client, account, WEBHOOK)
    await new_window(client, account, webhookId=webhook["id"], duration="1h", pageOnEnd=False)
    await post(client, webhook, title="Deploy in progress", dedup_key="deploy")
    await run_worker(settings)

    await end_windows(redis, settings)
    # Later sweeps, hours on, and a repeat of the still-open incident: nothing pages it.
    await end_windows(redis, settings, ShiftedClock(3 * 3600))
    await post(client, webhook, title="Deploy in progress", dedup_key="deploy")
    await run_worker(settings, clock=ShiftedClock(3 * 3600))
    assert await pages(pool, webhook) == []
    [held] = await incidents(pool, webhook)
    assert (held["status"], held["alert_count"]) == ("triggered", 2)

    # A new problem after the window pages as any alert does.
    await post(client, webhook, title="Disk full", dedup_key="disk")
    await run_worker(settings, clock=ShiftedClock(3 * 3600))
    _, new = await incidents(pool, webhook)
    assert new["maintenance_window_id"] is None
    assert Counter((p["number"], p["channel"]) for p in await pages(pool, webhook)) == {
        (new["number"], channel): 1 for channel in CHANNELS
    }


# 9 minutes left at a sweep 51 minutes into a 1-hour window (8 if the test ran over 30 s slow).
NINE_MINUTES = {f"Maintenance on Billing ends in {n} minutes" for n in (8, 9)}


async def reminders(client: TestClient, account: Account) -> list[dict[str, Any]]:
    inbox = await (await client.get("/api/notifications", headers=account.headers)).json()
    return [n for n in inbox["notifications"] if n["kind"] == "maintenance_ending"]


async def test_the_team_is_reminded_once_ten_minutes_before_a_window_ends_and_again_after_an_extension(
    client: TestClient, account: Account, pool: asyncpg.Pool, settings: Settings, redis: ArqRedis
) -> None:
    viewer, outsider = await new_account(pool), await new_account(pool)
    team = await new_team(client, account, members={"viewer": viewer})
    webhook = await create(client, account, {**WEBHOOK, "name": "Billing", "teamId": team["id"]})
    window = await new_window(client, account, webhookId=webhook["id"], duration="1h")
    await post(client, webhook, title="Replica lag", dedup_key="lag")
    await run_worker(settings)

    await end_windows(redis, settings, ShiftedClock(49 * 60))  # 11 minutes before its end
    assert await reminders(client, account) == []
    await end_windows(redis, settings, ShiftedClock(51 * 60))
    await end_windows(redis, settings, ShiftedClock(52 * 60))  # once, however many sweeps
    for member in (account, viewer):
        [notice] = await reminders(client, member)
        assert notice["title"] in NINE_MINUTES
        assert notice["body"].startswith("DB upgrade: ends at ")
        assert "1 incident held, they are paged then" in notice["body"]
        assert notice["webhook_id"] == webhook["id"]
    assert await reminders(client, outsider) == []
    assert await pages(pool, webhook) == []  # a reminder pages nobody

    # Extended by an hour: a new reminder before the new end, and the window still holds.
    later = (datetime.fromisoformat(window["ends_at"]) + timedelta(hours=1)).isoformat()
    resp = await client.patch(
        f"/api/maintenance-windows/{window['id']}", json={"endsAt": later}, headers=account.headers
    )
    assert resp.status == 200, await resp.text()
    await end_windows(redis, settings, ShiftedClock(111 * 60))
    assert [n["title"] in NINE_MINUTES for n in await reminders(client, viewer)] == [True, True]
    assert await pages(pool, webhook) == []
    await end_windows(redis, settings, ShiftedClock(121 * 60))
    assert len(await pages(pool, webhook)) == len(CHANNELS)  # paged at the new end


async def test_a_webhook_with_a_policy_escalates_only_when_its_window_ends(
    client: TestClient, account: Account, pool: asyncpg.Pool
) -> None:
    policy = await new_policy(client, account, step(5, account))
    webhook = await create(client, account, {**WEBHOOK, "escalationPolicyId": policy["id"]})
    window = await new_window(client, account, webhookId=webhook["id"], duration="1h")
    now = datetime.now(UTC)
    incident_id = await open_incident(pool, webhook, now)

    async with pool.acquire() as conn:
        await escalation.sweep(conn, now + timedelta(minutes=30))
        assert await conn.fetchval("SELECT count(*) FROM pages WHERE incident_id = $1", incident_id) == 0
        end = datetime.fromisoformat(window["ends_at"]) + timedelta(seconds=1)
        while (released := await ends.take_due(conn, end, [])) is not None:
            await ends.mark_enqueued(conn, released.window_id, end)
        await escalation.sweep(conn, end)
        paged = await conn.fetch("SELECT user_id, channel FROM pages WHERE incident_id = $1", incident_id)
        await conn.execute("UPDATE incidents SET status = 'resolved' WHERE id = $1", incident_id)
    assert paged and {p["user_id"] for p in paged} == {account.user.id}  # step 1 ran, at the end


async def test_ending_early_and_deleting(client: TestClient, account: Account) -> None:
    webhook = await create(client, account, WEBHOOK)
    window = await new_window(client, account, webhookId=webhook["id"], duration="2h")
    url = f"/api/maintenance-windows/{window['id']}"

    resp = await client.patch(url, json={"endsAt": "2020-01-01T00:00:00Z"}, headers=account.headers)
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["maintenance_window"]["status"] == "ended"
    shown = await (await client.get(f"/api/webhooks/{webhook['id']}", headers=account.headers)).json()
    assert shown["webhook"]["in_maintenance_until"] is None
    resp = await client.patch(url, json={"reason": "later"}, headers=account.headers)
    assert_error(await resp.json(), "MAINTENANCE_WINDOW_ENDED")

    active = await new_window(client, account, webhookId=webhook["id"], duration="30m")
    resp = await client.delete(f"/api/maintenance-windows/{active['id']}", headers=account.headers)
    answer = await resp.json()
    assert (answer["deleted"], answer["maintenance_window"]["status"]) == (False, "ended")

    later = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    scheduled = await new_window(client, account, webhookId=webhook["id"], startsAt=later, duration="1h")
    assert scheduled["status"] == "scheduled"
    resp = await client.delete(f"/api/maintenance-windows/{scheduled['id']}", headers=account.headers)
    assert (await resp.json())["deleted"] is True
    resp = await client.get(f"/api/maintenance-windows/{scheduled['id']}", headers=account.headers)
    assert_error(await resp.json(), "MAINTENANCE_WINDOW_NOT_FOUND")


async def test_admins_write_members_read_and_others_see_nothing(
    client: TestClient, account: Account, pool: asyncpg.Pool
) -> None:
    viewer, responder, outsider = [await new_account(pool) for _ in range(3)]
    team = await new_team(client, account, members={"viewer": viewer, "responder": responder})
    webhook = await create(client, account, {**WEBHOOK, "teamId": team["id"]})
    window = await new_window(client, account, webhookId=webhook["id"], duration="1h")
    url = f"/api/maintenance-windows/{window['id']}"

    assert (await client.get(url, headers=viewer.headers)).status == 200
    for member in (viewer, responder):
        for resp in (
            await client.post(
                "/api/maintenance-windows",
                json={"teamId": team["id"], "duration": "1h", "reason": "x"},
                headers=member.headers,
            ),
            await client.patch(url, json={"reason": "mine"}, headers=member.headers),
            await client.delete(url, headers=member.headers),
        ):
            assert resp.status == 403
            assert_error(await resp.json(), "INSUFFICIENT_PERMISSIONS")
    assert (await client.get(url, headers=outsider.headers)).status == 404
    assert (await client.delete(url, headers=outsider.headers)).status == 404
    listed = await (await client.get("/api/maintenance-windows", headers=outsider.headers)).json()
    assert window["id"] not in [w["id"] for w in listed["maintenance_windows"]]
    resp = await client.post(
        "/api/maintenance-windows",
        json={"webhookId": webhook["id"], "duration": "1h", "reason": "x"},
        headers=outsider.headers,
    )
    assert (resp.status, (await resp.json())["error"].split()[0]) == (400, "webhookId")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"duration": "8d"}, "duration"),
        ({"duration": "7d1m"}, "duration"),
        ({"duration": "0m"}, "duration"),
        ({"duration": "2 hours"}, "duration"),
        ({"startsAt": "2030-01-02T00:00:00Z", "endsAt": "2030-01-01T00:00:00Z"}, "endsAt"),
        ({"endsAt": "2020-01-01T00:00:00Z"}, "endsAt"),
        ({"endsAt": "tomorrow"}, "endsAt"),
        ({"endsAt": "2030-01-01T00:00:00"}, "endsAt"),  # no offset
        ({"duration": "1h", "endsAt": "2030-01-01T00:00:00Z"}, "duration"),
        ({}, "endsAt"),
        ({"duration": "1h", "reason": " "}, "reason"),
        ({"duration": "1h", "pageOnEnd": "yes"}, "pageOnEnd"),
        ({"duration": "1h", "webhookId": None}, "webhookId"),
        ({"duration": "1h", "teamId": None}, "webhookId"),
        ({"duration": "1h", "every": "webhook"}, "every"),
    ],
)
async def test_bad_input_is_a_400_naming_the_field(
    client: TestClient, account: Account, body: dict[str, Any], field: str
) -> None:
    webhook = await create(client, account, WEBHOOK)
    wanted = {"webhookId": webhook["id"], "reason": "upgrade", **body}
    resp = await client.post("/api/maintenance-windows", json=wanted, headers=account.headers)
    data = await resp.json()
    assert resp.status == 400, data
    assert_error(data, "VALIDATION_ERROR")
    assert data["error"].startswith(f"{field} ") or data["error"] == f"unknown field: {field}", data


async def test_two_workers_ending_windows_at_once_page_each_held_incident_once(
    client: TestClient, account: Account, pool: asyncpg.Pool, settings: Settings, redis: ArqRedis
) -> None:
    webhooks = [await create(client, account, WEBHOOK) for _ in range(3)]
    for webhook in webhooks:
        await new_window(client, account, webhookId=webhook["id"], duration="1h")
        await post(client, webhook, title="Migration running", dedup_key="migration")
    await run_worker(settings)

    for n in range(2):
        await redis.enqueue_job("end_maintenance", _job_id=f"sweep-{n}-{uuid.uuid4()}")
    await asyncio.gather(run_worker(settings, clock=AN_HOUR_LATER), run_worker(settings, clock=AN_HOUR_LATER))
    for webhook in webhooks:
        assert Counter(p["channel"] for p in await pages(pool, webhook)) == dict.fromkeys(CHANNELS, 1)
