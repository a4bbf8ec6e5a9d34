"""Tenant isolation: another user's object is 404 on every route that takes an id, and list routes
never show another user's objects. Table-driven: a new resource adds one line to OBJECT_ROUTES
(and one maker below) or to LIST_ROUTES.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from api.state import POOL
from engine.alerts import lifecycle
from engine.alerts.payloads import parse_alert
from tests.support.escalation import new_policy, step
from tests.support.factories import Account, create
from tests.support.routes import app_routes
from tests.support.schedules import create_schedule, rotation
from tests.support.teams import new_team

Maker = Callable[[TestClient, Account], Awaitable[str]]


async def make_webhook(client: TestClient, owner: Account) -> str:
    return (await create(client, owner))["id"]


async def make_api_key(client: TestClient, owner: Account) -> str:
    resp = await client.post("/api/api-keys", json={"name": "owner's"}, headers=owner.headers)
    return (await resp.json())["api_key"]["id"]


async def make_notification(client: TestClient, owner: Account) -> str:
    """Pausing a webhook leaves a notification in its owner's inbox."""
    webhook = await create(client, owner)
    await client.patch(f"/api/webhooks/{webhook['id']}", json={"status": "PAUSED"}, headers=owner.headers)
    inbox = await (await client.get("/api/notifications", headers=owner.headers)).json()
    return inbox["notifications"][0]["id"]


async def make_incident(client: TestClient, owner: Account) -> str:
    """An alert stored as process_alert stores it opens an incident."""
    webhook = await create(client, owner)
    parsed = parse_alert(b'{"title": "DB down", "dedup_key": "db"}', "application/json")
    async with client.server.app[POOL].acquire() as conn:
        await lifecycle.record_alert(
            conn, uuid.uuid4(), uuid.UUID(webhook["id"]), parsed, received_at=datetime.now(UTC)
        )
    listing = await (await client.get("/api/incidents", headers=owner.headers)).json()
    return listing["incidents"][0]["id"]


async def make_team(client: TestClient, owner: Account) -> str:
    return (await new_team(client, owner))["id"]


async def make_policy(client: TestClient, owner: Account) -> str:
    return (await new_policy(client, owner, step(5, owner)))["id"]


async def make_contact_method(client: TestClient, owner: Account) -> str:
    body = {"type": "SMS", "target": f"+1415555{uuid.uuid4().int % 10000:04d}"}
    resp = await client.post("/api/me/contact-methods", json=body, headers=owner.headers)
    assert resp.status == 201, await resp.text()
    return (await resp.json())["contact_method"]["id"]


async def make_notification_rule(client: TestClient, owner: Account) -> str:
    method_id = await make_contact_method(client, owner)
    body = {"contactMethodId": method_id, "delayMinutes": 7}
    resp = await client.post("/api/me/notification-rules", json=body, headers=owner.headers)
    assert resp.status == 201, await resp.text()
    return (await resp.json())["notification_rule"]["id"]


async def make_schedule(client: TestClient, owner: Account) -> str:
    """A schedule of the owner's with one override of theirs (for the {override_id} routes)."""
    me = str(owner.user.id)
    schedule = await create_schedule(client, owner, rotations=[rotation([me])])
    resp = await client.post(
        f"/api/schedules/{schedule['id']}/overrides",
        json={"userId": me, "start": "2025-03-11T12:00:00Z", "end": "2025-03-11T18:00:00Z"},
        headers=owner.headers,
    )
    assert resp.status == 201, await resp.text()
    return str(schedule["id"])


async def make_maintenance_window(client: TestClient, owner: Account) -> str:
    body = {"webhookId": await make_webhook(client, owner), "duration": "1h", "reason": "upgrade"}
    resp = await client.post("/api/maintenance-windows", json=body, headers=owner.headers)
    assert resp.status == 201, await resp.text()
    return str((await resp.json())["maintenance_window"]["id"])


async def make_silence(client: TestClient, owner: Account) -> str:
    matchers = [{"name": "severity", "value": "warning"}]
    body = {
        "webhookId": await make_webhook(client, owner),
        "duration": "1h",
        "comment": "c",
        "matchers": matchers,
    }
    resp = await client.post("/api/silences", json=body, headers=owner.headers)
    assert resp.status == 201, await resp.text()
    return str((await resp.json())["silence"]["id"])


async def make_heartbeat_webhook(client: TestClient, owner: Account) -> str:
    """A webhook of the owner's with one heartbeat (for the {heartbeat_id} routes)."""
    webhook = await create(client, owner)
    body = {"name": "backup", "period": "5m", "grace": "5m"}
    resp = await client.post(f"/api/webhooks/{webhook['id']}/heartbeats", json=body, headers=owner.headers)
    assert resp.status == 201, await resp.text()
    return str(webhook["id"])


async def first_heartbeat(client: TestClient, owner: Account, webhook_id: str) -> str:
    listed = await client.get(f"/api/webhooks/{webhook_id}/heartbeats", headers=owner.headers)
    return str((await listed.json())["heartbeats"][0]["id"])


async def first_override(client: TestClient, owner: Account, schedule_id: str) -> str:
    listed = await client.get(
        f"/api/schedules/{schedule_id}/overrides",
        params={"from": "2025-01-01T00:00:00Z"},
        headers=owner.headers,
    )
    return str((await listed.json())["overrides"][0]["id"])


# (method, path with {id} and maybe {user_id} (the owner's own), {override_id} or {heartbeat_id} (the
# owner's first), maker of the owner's object, body sent by the intruder)
OBJECT_ROUTES: list[tuple[str, str, Maker, Any]] = [
    ("GET", "/api/webhooks/{id}", make_webhook, None),
    ("PATCH", "/api/webhooks/{id}", make_webhook, {"name": "mine now"}),
    ("DELETE", "/api/webhooks/{id}", make_webhook, None),
    ("POST", "/api/webhooks/{id}/test", make_webhook, None),
    ("GET", "/api/webhooks/{id}/heartbeats", make_heartbeat_webhook, None),
    ("POST", "/api/webhooks/{id}/heartbeats", make_webhook, {"name": "x", "period": "5m", "grace": "5m"}),
    ("GET", "/api/webhooks/{id}/heartbeats/{heartbeat_id}", make_heartbeat_webhook, None),
    ("PATCH", "/api/webhooks/{id}/heartbeats/{heartbeat_id}", make_heartbeat_webhook, {"name": "mine now"}),
    ("DELETE", "/api/webhooks/{id}/heartbeats/{heartbeat_id}", make_heartbeat_webhook, None),
    ("POST", "/api/webhooks/{id}/heartbeats/{heartbeat_id}/pause", make_heartbeat_webhook, None),
    ("POST", "/api/webhooks/{id}/heartbeats/{heartbeat_id}/resume", make_heartbeat_webhook, None),
    ("DELETE", "/api/api-keys/{id}", make_api_key, None),
    ("POST", "/api/notifications/{id}/read", make_notification, None),
    ("GET", "/api/incidents/{id}", make_incident, None),
    ("POST", "/api/incidents/{id}/acknowledge", make_incident, None),
    ("POST", "/api/incidents/{id}/resolve", make_incident, None),
    ("POST", "/api/incidents/{id}/notes", make_incident, {"text": "mine now"}),
    ("GET", "/api/teams/{id}", make_team, None),
    ("PATCH", "/api/teams/{id}", make_team, {"name": "mine now"}),
    ("DELETE", "/api/teams/{id}", make_team, None),
    ("GET", "/api/teams/{id}/members", make_team, None),
    ("POST", "/api/teams/{id}/members", make_team, {"email": "intruder@example.com"}),
    ("PATCH", "/api/teams/{id}/members/{user_id}", make_team, {"role": "viewer"}),
    ("DELETE", "/api/teams/{id}/members/{user_id}", make_team, None),
    ("PATCH", "/api/me/contact-methods/{id}", make_contact_method, {"target": "+14155550199"}),
    ("DELETE", "/api/me/contact-methods/{id}", make_contact_method, None),
    ("POST", "/api/me/contact-methods/{id}/send-code", make_contact_method, None),
    ("POST", "/api/me/contact-methods/{id}/verify", make_contact_method, {"code": "123456"}),
    ("DELETE", "/api/me/notification-rules/{id}", make_notification_rule, None),
    ("GET", "/api/escalation-policies/{id}", make_policy, None),
    ("PATCH", "/api/escalation-policies/{id}", make_policy, {"name": "mine now"}),
    ("DELETE", "/api/escalation-policies/{id}", make_policy, None),
    ("POST", "/api/incidents/{id}/escalate", make_incident, None),
    ("POST", "/api/incidents/{id}/reassign", make_incident, {"userId": str(uuid.uuid4())}),
    ("GET", "/api/schedules/{id}", make_schedule, None),
    ("PATCH", "/api/schedules/{id}", make_schedule, {"name": "mine now"}),
    ("DELETE", "/api/schedules/{id}", make_schedule, None),
    ("GET", "/api/schedules/{id}/overrides", make_schedule, None),
    ("POST", "/api/schedules/{id}/overrides", make_schedule, {"userId": str(uuid.uuid4())}),
    ("DELETE", "/api/schedules/{id}/overrides/{override_id}", make_schedule, None),
    ("GET", "/api/schedules/{id}/on-call", make_schedule, None),
    ("GET", "/api/schedules/{id}/shifts", make_schedule, None),
    ("POST", "/api/schedules/{id}/ical/rotate", make_schedule, None),
    ("GET", "/api/maintenance-windows/{id}", make_maintenance_window, None),
    ("PATCH", "/api/maintenance-windows/{id}", make_maintenance_window, {"reason": "mine now"}),
    ("DELETE", "/api/maintenance-windows/{id}", make_maintenance_window, None),
    ("GET", "/api/silences/{id}", make_silence, None),
    ("PATCH", "/api/silences/{id}", make_silence, {"comment": "mine now"}),
    ("DELETE", "/api/silences/{id}", make_silence, None),
]

# (list path, key of the list in the answer, maker of one owner's object)
LIST_ROUTES: list[tuple[str, str, Maker]] = [
    ("/api/webhooks", "webhooks", make_webhook),
    ("/api/api-keys", "api_keys", make_api_key),
    ("/api/notifications", "notifications", make_notification),
    ("/api/incidents", "incidents", make_incident),
    ("/api/teams", "teams", make_team),
    ("/api/me/contact-methods", "contact_methods", make_contact_method),
    ("/api/me/notification-rules", "notification_rules", make_notification_rule),
    ("/api/escalation-policies", "escalation_policies", make_policy),
    ("/api/schedules", "schedules", make_schedule),
    ("/api/maintenance-windows", "maintenance_windows", make_maintenance_window),
    ("/api/silences", "silences", make_silence),
]


@pytest.mark.parametrize(("method", "path", "make", "body"), OBJECT_ROUTES)
async def test_another_users_object_is_not_found(
    client: TestClient,
    account: Account,
    other_account: Account,
    method: str,
    path: str,
    make: Maker,
    body: Any,
) -> None:
    object_id = await make(client, account)
    override_id = await first_override(client, account, object_id) if "{override_id}" in path else None
    heartbeat_id = await first_heartbeat(client, account, object_id) if "{heartbeat_id}" in path else None
    url = path.format(
        id=object_id, user_id=account.user.id, override_id=override_id, heartbeat_id=heartbeat_id
    )
    resp = await client.request(method, url, json=body, headers=other_account.headers)
    assert resp.status == 404, await resp.text()
    assert (await resp.json())["success"] is False
    # and nothing happened to it: the owner still finds it where it was
    listing = await (await client.get(path.split("/{id}")[0], headers=account.headers)).json()
    key = next(k for p, k, _ in LIST_ROUTES if p == path.split("/{id}")[0])
    assert object_id in [item["id"] for item in listing[key]]


@pytest.mark.parametrize(("path", "key", "make"), LIST_ROUTES)
async def test_lists_are_disjoint(
    client: TestClient, account: Account, other_account: Account, path: str, key: str, make: Maker
) -> None:
    mine = await make(client, account)
    theirs = await make(client, other_account)
    my_ids = {i["id"] for i in (await (await client.get(path, headers=account.headers)).json())[key]}
    their_ids = {i["id"] for i in (await (await client.get(path, headers=other_account.headers)).json())[key]}
    assert mine in my_ids and theirs in their_ids
    assert not my_ids & their_ids


def test_every_id_route_of_the_app_is_in_the_table() -> None:
    """A new route with an id fails here until it is added to OBJECT_ROUTES."""
    covered = {(m.lower(), p) for m, p, _, _ in OBJECT_ROUTES}
    with_ids = {r for r in app_routes() if "{id}" in r[1]}
    assert with_ids <= covered, sorted(with_ids - covered)


async def test_auth_me_is_always_the_callers_own(
    client: TestClient, account: Account, other_account: Account
) -> None:
    resp = await client.patch("/api/auth/me", json={"name": "Other"}, headers=other_account.headers)
    assert resp.status == 200
    mine = await (await client.get("/api/auth/me", headers=account.headers)).json()
    theirs = await (await client.get("/api/auth/me", headers=other_account.headers)).json()
    assert mine["user"]["id"] == str(account.user.id) and mine["user"]["name"] is None
    assert theirs["user"]["id"] == str(other_account.user.id) and theirs["user"]["name"] == "Other"
