"""``dedupBy: "alert"``: each alert of an Alertmanager (or Grafana) group is an incident of its own,
paged once, and resolved when that alert resolves, whatever the rest of its group does."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import asyncpg
from aiohttp.test_utils import TestClient

from engine.settings import Settings
from tests.support.factories import WEBHOOK, Account, counts, create, path_of, run_worker

DATA = Path(__file__).parent / "data"
AM = DATA / "alertmanager"
CHANNELS = ["CALL", "EMAIL", "PUSH_NOTIF", "SMS"]


def payload(name: str) -> dict[str, Any]:
    return json.loads((AM / name).read_text())


async def post(client: TestClient, webhook: dict[str, Any], body: object) -> None:
    resp = await client.post(
        path_of(webhook), data=json.dumps(body), headers={"Content-Type": "application/json"}
    )
    assert resp.status == 202, await resp.text()


async def incidents(pool: asyncpg.Pool, webhook: dict[str, Any]) -> dict[str, asyncpg.Record]:
    """The webhook's incidents by dedup key."""
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT id, number, dedup_key, title, status, alert_count FROM incidents WHERE webhook_id = $1",
            uuid.UUID(webhook["id"]),
        )
    return {r["dedup_key"]: r for r in rows}


async def sent(pool: asyncpg.Pool, webhook: dict[str, Any]) -> list[tuple[str, str]]:
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT o.channel, o.subject FROM outbox o JOIN alerts a ON a.id = o.alert_id"
            " WHERE a.webhook_id = $1 ORDER BY o.id",
            uuid.UUID(webhook["id"]),
        )
    return [(r["channel"], r["subject"]) for r in rows]


async def test_each_alert_of_a_group_is_an_incident_resolved_on_its_own(
    client: TestClient, account: Account, pool: asyncpg.Pool, settings: Settings
) -> None:
    webhook = await create(client, account, {**WEBHOOK, "dedupBy": "alert"})
    assert webhook["dedup_by"] == "alert"
    firing = payload("04-firing.json")  # recorded: one group of three firing alerts
    fingerprints = [a["fingerprint"] for a in firing["alerts"]]
    await post(client, webhook, firing)
    await run_worker(settings)

    found = await incidents(pool, webhook)
    assert sorted(found) == sorted(fingerprints)
    assert found[fingerprints[0]]["title"] == "5xx rate above 5% on api-1:9100"
    pages = await sent(pool, webhook)
    # Each incident pages once, with its own number and its own alert's text rather than the group's.
    numbers = {r["title"]: r["number"] for r in found.values()}
    assert sorted(pages) == sorted(
        (c, f"[CRITICAL] #{numbers[title]} {title}")
        for c in CHANNELS
        for title in (f"5xx rate above 5% on api-{n}:9100" for n in (1, 2, 3))
    )
    assert sorted(numbers.values()) == [1, 2, 3]

    # The group again, api-1 resolved in it (Alertmanager keeps the group "firing" while any alert fires).
    firing["alerts"][0]["status"] = "resolved"
    firing["alerts"][0]["endsAt"] = "2026-12-01T10:40:00Z"
    await post(client, webhook, firing)
    await run_worker(settings)
    found = await incidents(pool, webhook)
    assert [found[f]["status"] for f in fingerprints] == ["resolved", "triggered", "triggered"]
    assert [found[f]["alert_count"] for f in fingerprints] == [2, 2, 2]
    later = (await sent(pool, webhook))[len(pages) :]
    # api-1's RESOLVED notice on email and push; the two still firing page nobody again.
    assert sorted(later) == [
        ("EMAIL", "[INFO] RESOLVED #1: 5xx rate above 5% on api-1:9100"),
        ("PUSH_NOTIF", "[INFO] RESOLVED #1: 5xx rate above 5% on api-1:9100"),
    ]

    await post(client, webhook, payload("05-resolved.json"))  # the whole group resolved
    await run_worker(settings)
    found = await incidents(pool, webhook)
    assert [found[f]["status"] for f in fingerprints] == ["resolved"] * 3
    resp = await client.get(f"/api/incidents/{found[fingerprints[1]]['id']}", headers=account.headers)
    detail = (await resp.json())["incident"]
    assert len(detail["alerts"]) == 3  # the three group notifications it was part of
    resp = await client.get(f"/api/webhooks/{webhook['id']}", headers=account.headers)
    # A call is still one inbound request.
    assert (await resp.json())["webhook"]["statistics"] == counts(3, 3, 0, incidents_open=0)


async def test_dedup_by_alert_keeps_one_incident_for_a_sender_without_groups(
    client: TestClient, account: Account, pool: asyncpg.Pool, settings: Settings
) -> None:
    webhook = await create(client, account, {**WEBHOOK, "dedupBy": "alert"})
    for _ in range(2):
        await post(client, webhook, {"title": "DB down", "dedup_key": "db-1"})
    await run_worker(settings)
    [incident] = (await incidents(pool, webhook)).values()
    assert (incident["dedup_key"], incident["alert_count"]) == ("db-1", 2)


async def test_a_grafana_alert_is_keyed_by_its_fingerprint_and_resolves_by_it(
    client: TestClient, account: Account, pool: asyncpg.Pool, settings: Settings
) -> None:
    webhook = await create(client, account, {**WEBHOOK, "dedupBy": "alert"})
    for name in ("grafana_firing", "grafana_resolved"):
        await post(client, webhook, json.loads((DATA / "payloads" / f"{name}.json").read_text()))
        await run_worker(settings)
    [incident] = (await incidents(pool, webhook)).values()
    assert (incident["dedup_key"], incident["status"]) == ("b3f1d2e4c5a69788", "resolved")
    assert incident["title"] == "Disk on db-2 is 93% full"
