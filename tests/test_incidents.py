"""Incidents as an on-call engineer meets them: one page per problem, quiet repeats and recoveries,
acknowledge that stops paging, and the /api/incidents routes."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import asyncpg
from aiohttp.test_utils import TestClient
from arq.connections import ArqRedis

from engine import queue
from engine.alerts import lifecycle
from engine.alerts.payloads import parse_alert
from engine.settings import Settings
from tests.support.factories import WEBHOOK, Account, assert_error, counts, create, path_of, run_worker
from tests.support.providers import FakeProviders

AM_DATA = Path(__file__).parent / "data" / "alertmanager"


async def sent(pool: asyncpg.Pool, webhook: dict[str, Any]) -> list[tuple[str, str]]:
    """(channel, subject) of everything the outbox holds for the webhook, in order."""
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT o.channel, o.subject FROM outbox o JOIN alerts a ON a.id = o.alert_id"
            " WHERE a.webhook_id = $1 ORDER BY o.id",
            uuid.UUID(webhook["id"]),
        )
    return [(r["channel"], r["subject"]) for r in rows]


def channels(outbox: list[tuple[str, str]]) -> list[str]:
    return sorted(channel for channel, _ in outbox)


async def incidents(client: TestClient, account: Account, **params: str) -> list[dict[str, Any]]:
    resp = await client.get("/api/incidents", params=params, headers=account.headers)
    assert resp.status == 200, await resp.text()
    return (await resp.json())["incidents"]


async def incident(client: TestClient, account: Account, incident_id: str) -> dict[str, Any]:
    resp = await client.get(f"/api/incidents/{incident_id}", headers=account.headers)
    assert resp.status == 200, await resp.text()
    return (await resp.json())["incident"]


async def post(client: TestClient, webhook: dict[str, Any], body: object) -> dict[str, Any]:
    resp = await client.post(
        path_of(webhook), data=json.dumps(body), headers={"Content-Type": "application/json"}
    )
    assert resp.status == 202, await resp.text()
    return await resp.json()


async def test_recorded_alertmanager_group_pages_once_and_its_resolve_rings_no_phone(
    client: TestClient, account: Account, pool: asyncpg.Pool, settings: Settings
) -> None:
    webhook = await create(client, account, WEBHOOK)
    # Recorded from a real Alertmanager 0.25 (tests/data/alertmanager/capture.py): firing, two
    # repeats, a third alert joining the group, then the whole group resolved.
    payloads = sorted(AM_DATA.glob("*.json"))
    assert [p.name.split("-")[1] for p in payloads] == ["firing.json"] * 4 + ["resolved.json"]
    for payload in payloads:
        await post(client, webhook, json.loads(payload.read_text()))
        await run_worker(settings)  # one at a time, in the order Alertmanager sent them

    outbox = await sent(pool, webhook)
    pages = [o for o in outbox if "RESOLVED #" not in o[1]]
    notices = [o for o in outbox if "RESOLVED #" in o[1]]
    assert channels(pages) == ["CALL", "EMAIL", "PUSH_NOTIF", "SMS"]  # one page per channel
    assert channels(notices) == ["EMAIL", "PUSH_NOTIF"]  # the recovery never rings a phone
    assert {subject for _, subject in notices} == {"[INFO] RESOLVED #1: HighErrorRate"}
    [found] = await incidents(client, account)
    assert found["status"] == "resolved"
    assert found["alert_count"] == 5
    assert found["severity"] == "critical"
    assert found["resolved_by"] == {"type": "sender", "user_id": None}
    assert found["dedup_key"] == '{}:{alertname="HighErrorRate", cluster="prod"}'
    assert "api-3:9100" in found["message"]  # the changed group's list replaced the first one
    detail = await incident(client, account, found["id"])
    assert len(detail["alerts"]) == 5
    kinds = [entry["kind"] for entry in detail["timeline"]]
    assert kinds.count("page") == 4 and kinds.count("resolved_notice") == 2
    assert kinds[0] == "opened" and "resolved" in kinds
    assert all(e["delivery"]["status"] == "delivered" for e in detail["timeline"] if e["delivery"])
    resp = await client.get(f"/api/webhooks/{webhook['id']}", headers=account.headers)
    # A call is still one inbound alert; each one is final.
    assert (await resp.json())["webhook"]["statistics"] == counts(5, 5, 0, incidents_open=0)


async def test_repage_on_change_pages_again_when_a_group_grows(
    client: TestClient, account: Account, pool: asyncpg.Pool, settings: Settings
) -> None:
    webhook = await create(client, account, {**WEBHOOK, "repageOnChange": True})
    assert webhook["repage_on_change"] is True
    for payload in sorted(AM_DATA.glob("*.json")):
        await post(client, webhook, json.loads(payload.read_text()))
        await run_worker(settings)
    pages = [o for o in await sent(pool, webhook) if "RESOLVED #" not in o[1]]
    # The first notification, and the one where api-3 joined; the two plain repeats stay quiet.
    assert channels(pages) == sorted(["CALL", "EMAIL", "PUSH_NOTIF", "SMS"] * 2)
    [found] = await incidents(client, account)
    kinds = [e["kind"] for e in (await incident(client, account, found["id"]))["timeline"]]
    assert kinds.count("group_changed") == 1 and kinds.count("alert") == 2
    resp = await client.patch(
        f"/api/webhooks/{webhook['id']}", json={"repageOnChange": "yes"}, headers=account.headers
    )
    assert resp.status == 400 and "repageOnChange" in (await resp.json())["error"]


def pagerduty(action: str, key: str, summary: str = "Disk 95% full on db-1") -> dict[str, Any]:
    body: dict[str, Any] = {"routing_key": "x" * 32, "event_action": action, "dedup_key": key}
    if action == "trigger":
        body["payload"] = {"summary": summary, "source": "db-1", "severity": "critical"}
    return body


async def test_pagerduty_trigger_repeats_acknowledge_resolve_make_one_incident(
    client: TestClient, account: Account, pool: asyncpg.Pool, settings: Settings
) -> None:
    webhook = await create(client, account, WEBHOOK)
    key = "disk/db-1"
    for action in ("trigger", "trigger", "trigger", "acknowledge", "resolve"):
        answer = await post(client, webhook, pagerduty(action, key))
        assert answer["dedup_key"] == key  # PagerDuty clients read it back from the 202
        await run_worker(settings)
    outbox = await sent(pool, webhook)
    assert channels([o for o in outbox if "RESOLVED #" not in o[1]]) == ["CALL", "EMAIL", "PUSH_NOTIF", "SMS"]
    assert channels([o for o in outbox if "RESOLVED #" in o[1]]) == ["EMAIL", "PUSH_NOTIF"]
    [found] = await incidents(client, account)
    assert (found["status"], found["alert_count"], found["number"]) == ("resolved", 5, 1)
    assert found["acknowledged_by"] == {"type": "sender", "user_id": None}

    # After the resolve the same key is a new problem: incident #2, paged again.
    await post(client, webhook, pagerduty("trigger", key))
    await run_worker(settings)
    second, first = await incidents(client, account)
    assert (second["number"], second["status"], first["number"]) == (2, "triggered", 1)
    assert len(await sent(pool, webhook)) == len(outbox) + 4
    assert [i["number"] for i in await incidents(client, account, status="open")] == [2]
    assert [i["number"] for i in await incidents(client, account, status="resolved")] == [1]


async def test_a_resolve_for_nothing_open_is_recorded_and_pages_nobody(
    client: TestClient, account: Account, pool: asyncpg.Pool, settings: Settings
) -> None:
    webhook = await create(client, account, WEBHOOK)
    await post(client, webhook, pagerduty("resolve", "never-opened"))
    await post(client, webhook, pagerduty("acknowledge", "never-opened"))
    await run_worker(settings)
    assert await sent(pool, webhook) == []
    assert await incidents(client, account) == []
    resp = await client.get(f"/api/webhooks/{webhook['id']}", headers=account.headers)
    assert (await resp.json())["webhook"]["statistics"] == counts(2, 2, 0, incidents_open=0)


async def test_a_severity_rise_pages_once_and_a_generic_resolve_closes_by_content(
    client: TestClient, account: Account, pool: asyncpg.Pool, settings: Settings
) -> None:
    webhook = await create(client, account, WEBHOOK)
    for severity in ("warning", "warning", "critical", "critical"):
        await post(client, webhook, {"title": "Queue backlog", "source": "worker-3", "severity": severity})
        await run_worker(settings)
    assert len(await sent(pool, webhook)) == 8  # the opening and the rise: 4 channels each
    await post(client, webhook, {"title": "Queue backlog", "source": "worker-3", "status": "resolved"})
    await run_worker(settings)
    [found] = await incidents(client, account)
    assert (found["severity"], found["status"], found["alert_count"]) == ("critical", "resolved", 5)
    timeline = (await incident(client, account, found["id"]))["timeline"]
    assert [e["kind"] for e in timeline if e["actor"] == "sender"].count("severity_raised") == 1


async def test_dedup_by_none_makes_every_alert_its_own_incident(
    client: TestClient, account: Account, settings: Settings
) -> None:
    webhook = await create(client, account, {**WEBHOOK, "dedupBy": "none"})
    assert webhook["dedup_by"] == "none"
    for _ in range(2):
        await post(client, webhook, {"title": "DB down", "dedup_key": "db"})
    await run_worker(settings)
    assert sorted(i["number"] for i in await incidents(client, account)) == [1, 2]


async def test_acknowledge_from_the_api_stops_a_page_still_queued(
    client: TestClient, account: Account, pool: asyncpg.Pool, redis: ArqRedis, settings: Settings
) -> None:
    webhook = await create(client, account, WEBHOOK)
    # What process_alert does, then the deliver jobs wait in the queue while a person acknowledges.
    parsed = parse_alert(
        json.dumps({"title": "DB down", "severity": "critical"}).encode(), "application/json"
    )
    alert_id = uuid.uuid4()
    async with pool.acquire() as conn:
        delivery_ids = await lifecycle.record_alert(
            conn, alert_id, uuid.UUID(webhook["id"]), parsed, received_at=await conn.fetchval("SELECT now()")
        )
    assert delivery_ids is not None and len(delivery_ids) == 4
    for delivery_id in delivery_ids:
        await queue.enqueue_delivery(redis, str(delivery_id))
    [found] = await incidents(client, account)
    resp = await client.post(f"/api/incidents/{found['id']}/acknowledge", headers=account.headers)
    assert resp.status == 200, await resp.text()
    acknowledged = (await resp.json())["incident"]
    assert acknowledged["status"] == "acknowledged"
    assert acknowledged["acknowledged_by"] == {"type": "user", "user_id": str(account.user.id)}

    await run_worker(settings)
    assert await sent(pool, webhook) == []  # nothing was sent after the acknowledge committed
    detail = await incident(client, account, found["id"])
    assert {e["delivery"]["status"] for e in detail["timeline"] if e["delivery"]} == {"cancelled"}
    resp = await client.get(f"/api/webhooks/{webhook['id']}", headers=account.headers)
    assert (await resp.json())["webhook"]["statistics"] == counts(1, 1, 0, incidents_open=1)


async def test_a_person_resolves_with_a_note_and_the_resolved_notice_goes_out(
    client: TestClient, account: Account, pool: asyncpg.Pool, settings: Settings
) -> None:
    webhook = await create(client, account, {**WEBHOOK, "notifyOnResolve": ["SMS"]})
    assert webhook["notify_on_resolve"] == ["SMS"]
    await post(client, webhook, {"title": "DB down", "severity": "critical"})
    await run_worker(settings)
    [found] = await incidents(client, account)
    resp = await client.post(
        f"/api/incidents/{found['id']}/notes", json={"text": "failing over to db-2"}, headers=account.headers
    )
    assert resp.status == 201, await resp.text()
    resp = await client.post(f"/api/incidents/{found['id']}/resolve", headers=account.headers)
    assert resp.status == 200, await resp.text()
    await run_worker(settings)
    detail = await incident(client, account, found["id"])
    assert detail["status"] == "resolved"
    assert detail["resolved_by"] == {"type": "user", "user_id": str(account.user.id)}
    notes = [e for e in detail["timeline"] if e["kind"] == "note"]
    assert [(n["text"], n["actor"]) for n in notes] == [("failing over to db-2", "user")]
    notices = [e["delivery"] for e in detail["timeline"] if e["kind"] == "resolved_notice"]
    assert [(n["channel"], n["status"]) for n in notices] == [("SMS", "delivered")]
    notices_sent = [o for o in await sent(pool, webhook) if "RESOLVED" in o[1]]
    assert notices_sent == [("SMS", "[INFO] RESOLVED #1: DB down")]
    # Resolving again changes nothing and sends nothing more.
    resp = await client.post(f"/api/incidents/{found['id']}/resolve", headers=account.headers)
    assert resp.status == 200
    resp = await client.post(f"/api/incidents/{found['id']}/acknowledge", headers=account.headers)
    assert_error(await resp.json(), "INCIDENT_RESOLVED")


async def test_notify_on_resolve_refuses_call_and_dedup_by_is_checked(
    client: TestClient, account: Account
) -> None:
    for body, field in (
        ({"notifyOnResolve": ["EMAIL", "CALL"]}, "notifyOnResolve"),
        ({"notifyOnResolve": "EMAIL"}, "notifyOnResolve"),
        ({"dedupBy": "sometimes"}, "dedupBy"),
    ):
        resp = await client.post("/api/webhooks", json={**WEBHOOK, **body}, headers=account.headers)
        assert resp.status == 400
        data = await resp.json()
        assert_error(data, "VALIDATION_ERROR")
        assert field in data["error"]
    webhook = await create(client, account, WEBHOOK)
    assert (webhook["dedup_by"], webhook["notify_on_resolve"]) == ("group", ["EMAIL", "PUSH_NOTIF"])
    resp = await client.patch(
        f"/api/webhooks/{webhook['id']}", json={"notifyOnResolve": ["CALL"]}, headers=account.headers
    )
    assert resp.status == 400 and "notifyOnResolve" in (await resp.json())["error"]


async def test_incident_routes_need_a_key_and_belong_to_their_owner(
    client: TestClient, account: Account, other_account: Account, settings: Settings
) -> None:
    webhook = await create(client, account, WEBHOOK)
    await post(client, webhook, {"title": "DB down"})
    await run_worker(settings)
    [found] = await incidents(client, account)
    one = f"/api/incidents/{found['id']}"
    routes = [
        ("GET", "/api/incidents"),
        ("GET", one),
        ("POST", f"{one}/acknowledge"),
        ("POST", f"{one}/resolve"),
        ("POST", f"{one}/notes"),
    ]
    for method, path in routes:
        resp = await client.request(method, path, json={"text": "x"})
        assert resp.status == 401, path
        assert_error(await resp.json(), "UNAUTHORIZED")
    for method, path in routes[1:]:
        resp = await client.request(method, path, json={"text": "x"}, headers=other_account.headers)
        assert resp.status == 404, path
        assert_error(await resp.json(), "INCIDENT_NOT_FOUND")
    assert await incidents(client, other_account) == []
    for params in ({"status": "closed"}, {"webhook": "nope"}, {"cursor": "garbage"}, {"limit": "0"}):
        resp = await client.get("/api/incidents", params=params, headers=account.headers)
        assert resp.status == 400, params
        assert next(iter(params)) in (await resp.json())["error"]
    for body in ({}, {"text": ""}, {"text": 5}, {"text": "x", "extra": 1}, []):
        resp = await client.post(f"{one}/notes", json=body, headers=account.headers)
        assert resp.status == 400, body
    resp = await client.get("/api/incidents/not-a-uuid", headers=account.headers)
    assert resp.status == 404


async def test_incident_list_pages_newest_first(
    client: TestClient, account: Account, settings: Settings
) -> None:
    webhook = await create(client, account, WEBHOOK)
    for n in range(5):
        await post(client, webhook, {"title": f"problem {n}"})
        await run_worker(settings)
    seen: list[int] = []
    cursor: str | None = None
    while True:
        params = {"limit": "2", **({"cursor": cursor} if cursor else {})}
        resp = await client.get("/api/incidents", params=params, headers=account.headers)
        data = await resp.json()
        seen += [i["number"] for i in data["incidents"]]
        cursor = data["next_cursor"]
        if cursor is None:
            break
    assert seen == [5, 4, 3, 2, 1]
    assert len(await incidents(client, account, webhook=webhook["id"])) == 5
    assert await incidents(client, account, webhook=str(uuid.uuid4())) == []


async def test_the_202_names_the_senders_key_only_when_it_gave_one(
    client: TestClient, account: Account
) -> None:
    webhook = await create(client, account, WEBHOOK)
    assert (await post(client, webhook, {"title": "x", "dedup_key": "k-1"}))["dedup_key"] == "k-1"
    assert (await post(client, webhook, {"title": "x", "dedupKey": "k-2"}))["dedup_key"] == "k-2"
    assert "dedup_key" not in await post(client, webhook, {"title": "no key"})
    resp = await client.post(path_of(webhook), data="dedup_key: plain text")
    assert "dedup_key" not in await resp.json()


async def test_the_resolved_notice_is_a_quiet_push_and_no_call(
    live: TestClient, account: Account, provider_settings: Settings, fake_providers: FakeProviders
) -> None:
    webhook = await create(live, account, WEBHOOK)
    await post(live, webhook, {"title": "DB down", "severity": "critical", "dedup_key": "db"})
    await run_worker(provider_settings)
    await post(live, webhook, {"title": "DB down", "dedup_key": "db", "status": "resolved"})
    await run_worker(provider_settings)
    sent_kinds = [(r.kind, r.headers.get("Priority")) for r in fake_providers.requests]
    # The page: SMS, call and push at priority 5; the notice: one push at ntfy priority 2, no call.
    assert sorted(sent_kinds, key=str) == sorted(
        [("sms", None), ("call", None), ("push", "5"), ("push", "2")], key=str
    )


async def test_the_list_filters_by_severity_as_the_dashboard_does_and_names_a_bad_one(
    client: TestClient, account: Account, settings: Settings
) -> None:
    webhook = await create(client, account, WEBHOOK)
    for n, severity in enumerate(("critical", "warning", "warning")):
        await post(client, webhook, {"title": f"problem {n}", "severity": severity})
        await run_worker(settings)
    warnings = await incidents(client, account, severity="warning")
    assert [i["severity"] for i in warnings] == ["warning", "warning"]
    assert [i["number"] for i in warnings] == [3, 2]
    assert [i["number"] for i in await incidents(client, account, severity="critical")] == [1]
    assert await incidents(client, account, severity="info") == []
    assert len(await incidents(client, account)) == 3  # no filter: every severity
    resp = await client.get("/api/incidents?severity=loud", headers=account.headers)
    assert resp.status == 400
    body = await resp.json()
    assert_error(body, "VALIDATION_ERROR")
    assert body["error"].startswith("severity must be one of critical, error, warning, info")
