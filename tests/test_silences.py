"""Silences as Alertmanager's users know them: ``severity="warning", source=~"staging-.*"`` keeps
staging's warnings quiet (recorded, grouped, paging nobody) while a critical from prod still pages;
once the silence is over, the next matching alert pages. Real PostgreSQL, Redis and arq workers."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from engine.settings import Settings
from tests.support.factories import WEBHOOK, Account, assert_error, create, new_account, path_of, run_worker
from tests.support.teams import new_team

STAGING_WARNINGS = [
    {"name": "severity", "value": "warning"},
    {"name": "source", "value": "staging-.*", "isRegex": True},
]


async def new_silence(client: TestClient, account: Account, **body: Any) -> dict[str, Any]:
    wanted = {"matchers": STAGING_WARNINGS, "duration": "2h", "comment": "staging is rebuilt", **body}
    resp = await client.post("/api/silences", json=wanted, headers=account.headers)
    assert resp.status == 201, await resp.text()
    return (await resp.json())["silence"]


async def post(client: TestClient, webhook: dict[str, Any], **alert: Any) -> None:
    resp = await client.post(path_of(webhook), json=alert)
    assert resp.status == 202, await resp.text()


async def paged(pool: asyncpg.Pool, webhook: dict[str, Any]) -> dict[str, int]:
    """dedup key -> page deliveries sent for its incidents."""
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT i.dedup_key, count(d.id) AS pages FROM incidents i"
            " LEFT JOIN deliveries d ON d.incident_id = i.id AND d.kind = 'page' AND d.status = 'delivered'"
            " WHERE i.webhook_id = $1 GROUP BY i.dedup_key",
            uuid.UUID(webhook["id"]),
        )
    return {r["dedup_key"]: r["pages"] for r in rows}


async def test_staging_warnings_are_silent_prod_critical_pages_and_expiry_pages_the_next(
    client: TestClient, account: Account, pool: asyncpg.Pool, settings: Settings
) -> None:
    webhook = await create(client, account, WEBHOOK)
    silence = await new_silence(client, account, webhookId=webhook["id"])
    assert silence["status"] == "active"
    assert [m["operator"] for m in silence["matchers"]] == ["=", "=~"]

    for _ in range(3):
        await post(client, webhook, title="Slow", severity="warning", source="staging-db", dedup_key="slow")
    await post(client, webhook, title="Down", severity="critical", source="prod-db", dedup_key="prod-down")
    await post(client, webhook, title="Down", severity="critical", source="staging-db", dedup_key="stg-down")
    await post(client, webhook, title="Slow", severity="warning", source="prod-db", dedup_key="prod-slow")
    await run_worker(settings)
    assert await paged(pool, webhook) == {"slow": 0, "prod-down": 4, "stg-down": 4, "prod-slow": 4}
    async with pool.acquire() as conn:
        incident = await conn.fetchrow(
            "SELECT id, alert_count FROM incidents WHERE webhook_id = $1 AND dedup_key = 'slow'",
            uuid.UUID(webhook["id"]),
        )
    assert incident["alert_count"] == 3
    shown = await (await client.get(f"/api/incidents/{incident['id']}", headers=account.headers)).json()
    texts = [e["text"] for e in shown["incident"]["timeline"]]
    assert any(t.startswith("page held: silenced until ") and "staging is rebuilt" in t for t in texts)

    resp = await client.delete(f"/api/silences/{silence['id']}", headers=account.headers)
    answer = await resp.json()
    assert (answer["deleted"], answer["silence"]["status"]) == (False, "expired")
    await post(client, webhook, title="Slow", severity="warning", source="staging-db", dedup_key="slow")
    await post(client, webhook, title="Slower", severity="warning", source="staging-web", dedup_key="slower")
    await run_worker(settings)
    assert await paged(pool, webhook) == {
        "slow": 4,
        "prod-down": 4,
        "stg-down": 4,
        "prod-slow": 4,
        "slower": 4,
    }
    listed = await (await client.get("/api/silences", headers=account.headers)).json()
    assert silence["id"] in [s["id"] for s in listed["silences"]]  # expired, still listed


async def test_a_team_silence_covers_its_webhooks_and_only_responders_up_make_one(
    client: TestClient, account: Account, pool: asyncpg.Pool, settings: Settings
) -> None:
    viewer, responder, outsider = [await new_account(pool) for _ in range(3)]
    team = await new_team(client, account, members={"viewer": viewer, "responder": responder})
    webhook = await create(client, account, {**WEBHOOK, "teamId": team["id"]})
    body = {"teamId": team["id"], "matchers": [{"name": "env", "value": "staging"}], "duration": "1h"}
    resp = await client.post("/api/silences", json={**body, "comment": "x"}, headers=viewer.headers)
    assert_error(await resp.json(), "INSUFFICIENT_PERMISSIONS")
    silence = await new_silence(client, responder, **body)
    assert (await client.delete(f"/api/silences/{silence['id']}", headers=outsider.headers)).status == 404
    resp = await client.delete(f"/api/silences/{silence['id']}", headers=viewer.headers)
    assert resp.status == 403
    listed = await (await client.get("/api/silences", headers=viewer.headers)).json()
    assert silence["id"] in [s["id"] for s in listed["silences"]]

    await post(client, webhook, title="Noisy", severity="critical", labels={"env": "staging"}, dedup_key="a")
    await post(client, webhook, title="Real", severity="critical", labels={"env": "prod"}, dedup_key="b")
    await run_worker(settings)
    assert await paged(pool, webhook) == {"a": 0, "b": 4}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"matchers": [{"name": "source", "value": "staging-(", "isRegex": True}]}, "matchers[0].value"),
        ({"matchers": []}, "matchers"),
        ({"matchers": [{"name": "has space", "value": "x"}]}, "matchers[0].name"),
        ({"matchers": [{"name": "env", "value": "x", "isRegex": "yes"}]}, "matchers[0].isRegex"),
        ({"matchers": [{"name": "env", "value": "x", "op": "="}]}, "matchers[0].op"),
        ({"duration": "8d"}, "duration"),
        ({"duration": None, "startsAt": "2030-01-02T00:00:00Z", "endsAt": "2030-01-01T00:00:00Z"}, "endsAt"),
        ({"comment": ""}, "comment"),
    ],
)
async def test_bad_input_is_a_400_naming_the_field(
    client: TestClient, account: Account, body: dict[str, Any], field: str
) -> None:
    webhook = await create(client, account, WEBHOOK)
    wanted = {
        "webhookId": webhook["id"],
        "matchers": STAGING_WARNINGS,
        "duration": "1h",
        "comment": "c",
        **body,
    }
    wanted = {k: v for k, v in wanted.items() if v is not None}
    resp = await client.post("/api/silences", json=wanted, headers=account.headers)
    data = await resp.json()
    assert resp.status == 400, data
    assert data["error"].startswith(f"{field} ") or data["error"] == f"unknown field: {field}", data


async def test_one_silence_is_read_extended_and_changed_and_an_expired_one_no_longer_changes(
    client: TestClient, account: Account, pool: asyncpg.Pool, settings: Settings
) -> None:
    viewer, outsider = await new_account(pool), await new_account(pool)
    team = await new_team(client, account, members={"viewer": viewer})
    webhook = await create(client, account, {**WEBHOOK, "teamId": team["id"]})
    silence = await new_silence(client, account, webhookId=webhook["id"], duration="2h")
    url = f"/api/silences/{silence['id']}"

    shown = await (await client.get(url, headers=viewer.headers)).json()
    assert shown["silence"] == silence
    assert (await client.get(url, headers=outsider.headers)).status == 404

    # Extend it to 6 hours from its start, and say why.
    resp = await client.patch(
        url, json={"duration": "6h", "comment": "rebuild runs late"}, headers=account.headers
    )
    assert resp.status == 200, await resp.text()
    changed = (await resp.json())["silence"]
    starts, ends = (datetime.fromisoformat(changed[k]) for k in ("starts_at", "ends_at"))
    assert (ends - starts, changed["comment"], changed["starts_at"]) == (
        timedelta(hours=6),
        "rebuild runs late",
        silence["starts_at"],
    )
    later = datetime.fromisoformat(silence["ends_at"]) + timedelta(hours=1)
    resp = await client.patch(url, json={"endsAt": later.isoformat()}, headers=account.headers)
    assert datetime.fromisoformat((await resp.json())["silence"]["ends_at"]) == later
    assert (await client.patch(url, json={"comment": "x"}, headers=viewer.headers)).status == 403

    # New matchers hold for the next alerts: staging pages again, dev is silent.
    dev = [{"name": "source", "value": "dev-.*", "isRegex": True}]
    resp = await client.patch(url, json={"matchers": dev}, headers=account.headers)
    assert [m["operator"] for m in (await resp.json())["silence"]["matchers"]] == ["=~"]
    await post(client, webhook, title="Slow", severity="warning", source="staging-db", dedup_key="stg")
    await post(client, webhook, title="Slow", severity="warning", source="dev-db", dedup_key="dev")
    await run_worker(settings)
    assert await paged(pool, webhook) == {"stg": 4, "dev": 0}

    # An end already past expires it now; after that it is read, not changed.
    resp = await client.patch(url, json={"endsAt": "2020-01-01T00:00:00Z"}, headers=account.headers)
    assert (await resp.json())["silence"]["status"] == "expired"
    resp = await client.patch(url, json={"duration": "1h"}, headers=account.headers)
    assert resp.status == 409
    assert_error(await resp.json(), "SILENCE_EXPIRED")
    assert (await (await client.get(url, headers=account.headers)).json())["silence"]["status"] == "expired"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"duration": "8d"}, "duration"),
        ({"endsAt": "tomorrow"}, "endsAt"),
        ({"startsAt": "2030-01-01T00:00:00Z"}, "startsAt"),  # it has started
        ({"comment": ""}, "comment"),
        ({"matchers": [{"name": "source", "value": "(", "isRegex": True}]}, "matchers[0].value"),
        ({"teamId": str(uuid.uuid4())}, "teamId"),
        ({"quiet": True}, "quiet"),
    ],
)
async def test_a_bad_change_is_a_400_naming_the_field_and_changes_nothing(
    client: TestClient, account: Account, body: dict[str, Any], field: str
) -> None:
    webhook = await create(client, account, WEBHOOK)
    silence = await new_silence(client, account, webhookId=webhook["id"])
    resp = await client.patch(f"/api/silences/{silence['id']}", json=body, headers=account.headers)
    data = await resp.json()
    assert resp.status == 400, data
    assert data["error"].startswith(f"{field} ") or data["error"] == f"unknown field: {field}", data
    shown = await (await client.get(f"/api/silences/{silence['id']}", headers=account.headers)).json()
    assert shown["silence"] == silence
