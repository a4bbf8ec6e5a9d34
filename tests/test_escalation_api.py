"""Escalation policies, a webhook's policy, escalate and reassign through the API: shapes, the
field each refusal names (as sent: delayMinutes, teamId, escalationPolicyId), and team roles."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg
from aiohttp.test_utils import TestClient

from engine.incidents import actions
from engine.settings import Settings
from tests.conftest import make_client
from tests.support.escalation import new_policy, open_incident, step
from tests.support.factories import WEBHOOK, Account, assert_error, create, new_account
from tests.support.services import Services
from tests.support.teams import new_team


async def test_a_policy_is_made_read_changed_and_deleted(client: TestClient, account: Account) -> None:
    policy = await new_policy(client, account, step(0.5, account), repeat=2)
    assert policy["repeat"] == 2 and policy["description"] is None
    assert policy["steps"] == [
        {"position": 0, "delay_minutes": 0.5, "targets": [{"type": "user", "id": str(account.user.id)}]}
    ]
    listed = await (await client.get("/api/escalation-policies", headers=account.headers)).json()
    assert [p["id"] for p in listed["escalation_policies"]] == [policy["id"]]
    url = f"/api/escalation-policies/{policy['id']}"
    body = {"name": "Follow the sun", "steps": [step(5, account), step(10, account)]}
    resp = await client.patch(url, json=body, headers=account.headers)
    assert resp.status == 200, await resp.text()
    changed = (await resp.json())["escalation_policy"]
    assert changed["name"] == "Follow the sun" and changed["repeat"] == 2
    assert [s["delay_minutes"] for s in changed["steps"]] == [5, 10]
    webhook = await create(client, account, {**WEBHOOK, "escalationPolicyId": policy["id"]})
    resp = await client.delete(url, headers=account.headers)
    assert resp.status == 409
    assert_error(await resp.json(), "ESCALATION_POLICY_IN_USE")
    resp = await client.patch(
        f"/api/webhooks/{webhook['id']}", json={"escalationPolicyId": None}, headers=account.headers
    )
    assert (await resp.json())["webhook"]["escalation_policy_id"] is None
    assert (await client.delete(url, headers=account.headers)).status == 200
    assert (await client.get(url, headers=account.headers)).status == 404


def _bad_channel_targets(me: str) -> list[tuple[dict[str, Any], str]]:
    """Channel targets a policy refuses (as a second target), and the field each 400 names."""
    where = "steps[0].targets[1]"
    return [
        ({"type": "channel", "channel": "FAX", "target": "+14155550123"}, f"{where}.channel"),
        ({"type": "channel", "target": "ops@example.com"}, f"{where}.channel"),
        ({"type": "channel", "channel": "EMAIL", "target": "ops at example.com"}, f"{where}.target"),
        ({"type": "channel", "channel": "EMAIL"}, f"{where}.target"),
        ({"type": "channel", "channel": "SMS", "target": "555-0123"}, f"{where}.target"),
        ({"type": "channel", "channel": "PUSH_NOTIF", "target": "ops topic!"}, f"{where}.target"),
        ({"type": "channel", "channel": "PUSH_NOTIF", "target": ["ops"]}, f"{where}.target"),
        ({"type": "channel", "channel": "EMAIL", "target": "ops@example.com", "id": me}, f"{where}.id"),
        ({"type": "user", "id": me, "channel": "EMAIL"}, f"{where}.channel"),
    ]


def _bad(me: str, outsider: str) -> list[tuple[dict[str, Any], str]]:
    good = {"delayMinutes": 5, "targets": [{"type": "user", "id": me}]}
    return [
        ({"steps": [good]}, "name"),
        ({"name": "P"}, "steps"),
        ({"name": "P", "steps": []}, "steps"),
        ({"name": "P", "steps": ["soon"]}, "steps[0]"),
        ({"name": "P", "steps": [{"targets": good["targets"]}]}, "steps[0].delayMinutes"),
        ({"name": "P", "steps": [good, {**good, "delayMinutes": 0}]}, "steps[1].delayMinutes"),
        ({"name": "P", "steps": [{**good, "delayMinutes": "5"}]}, "steps[0].delayMinutes"),
        ({"name": "P", "steps": [{**good, "delay": 5}]}, "steps[0].delay"),
        ({"name": "P", "steps": [{**good, "targets": []}]}, "steps[0].targets"),
        (
            {"name": "P", "steps": [{**good, "targets": [{"type": "team", "id": me}]}]},
            "steps[0].targets[0].type",
        ),
        (
            {"name": "P", "steps": [{**good, "targets": [{"type": "user", "id": "bob"}]}]},
            "steps[0].targets[0].id",
        ),
        (
            {"name": "P", "steps": [{**good, "targets": [{"type": "user", "id": outsider}]}]},
            "steps[0].targets[0].id",
        ),
        (
            {"name": "P", "steps": [{**good, "targets": [{"type": "schedule", "id": str(uuid.uuid4())}]}]},
            "steps[0].targets[0].id",
        ),
        *(
            ({"name": "P", "steps": [{**good, "targets": [*good["targets"], target]}]}, field)
            for target, field in _bad_channel_targets(me)
        ),
        ({"name": "P", "steps": [good], "repeat": 10}, "repeat"),
        ({"name": "P", "steps": [good], "teamId": "nope"}, "teamId"),
        ({"name": "P", "steps": [good], "colour": "red"}, "colour"),
    ]


async def test_bad_input_is_a_400_naming_the_field_as_sent(
    client: TestClient, account: Account, other_account: Account
) -> None:
    for body, field in _bad(str(account.user.id), str(other_account.user.id)):
        resp = await client.post("/api/escalation-policies", json=body, headers=account.headers)
        assert resp.status == 400, (body, await resp.text())
        data = await resp.json()
        assert_error(data, "VALIDATION_ERROR")
        assert data["error"].startswith(f"{field} ") or data["error"] == f"unknown field: {field}", (
            field,
            data,
        )
    listed = await (await client.get("/api/escalation-policies", headers=account.headers)).json()
    assert listed["total"] == 0


async def test_a_channel_target_is_kept_as_its_channel_normalises_it_and_replaced_with_the_steps(
    client: TestClient, account: Account
) -> None:
    ops = {"type": "channel", "channel": "EMAIL", "target": " Ops@Example.COM "}
    policy = await new_policy(client, account, step(5, account, ops, ops))
    assert policy["steps"][0]["targets"] == [
        {"type": "user", "id": str(account.user.id)},
        {"type": "channel", "channel": "EMAIL", "target": "Ops@example.com"},  # once
    ]
    topic = {"type": "channel", "channel": "PUSH_NOTIF", "target": "ops-topic"}
    resp = await client.patch(
        f"/api/escalation-policies/{policy['id']}", json={"steps": [step(10, topic)]}, headers=account.headers
    )
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["escalation_policy"]["steps"][0]["targets"] == [topic]
    resp = await client.patch(
        f"/api/escalation-policies/{policy['id']}",
        json={"steps": [step(10, topic), step(5, {**topic, "target": "no spaces"})]},
        headers=account.headers,
    )
    assert resp.status == 400
    assert (await resp.json())["error"].startswith("steps[1].targets[0].target ")
    shown = await (
        await client.get(f"/api/escalation-policies/{policy['id']}", headers=account.headers)
    ).json()
    assert shown["escalation_policy"]["steps"][0]["targets"] == [topic]  # a refused change changes nothing


async def test_a_channel_target_on_a_channel_without_a_provider_is_refused(
    services: Services, account: Account
) -> None:
    """Outside dev, as for a webhook's notificationTypes: a 400 now, never a page dropped later."""
    bare = Settings(database_url=services.database_url, redis_url=services.redis_url, require_https=False)
    client = await make_client(bare)
    try:
        body = {
            "name": "P",
            "steps": [step(5, {"type": "channel", "channel": "SMS", "target": "+14155550123"})],
        }
        resp = await client.post("/api/escalation-policies", json=body, headers=account.headers)
        assert resp.status == 400
        data = await resp.json()
        assert_error(data, "CHANNEL_NOT_CONFIGURED")
        assert data["error"].startswith("steps[0].targets[0].channel SMS is not configured")
    finally:
        await client.close()


async def test_a_webhooks_policy_is_one_of_its_team(
    client: TestClient, account: Account, other_account: Account
) -> None:
    theirs = await new_policy(client, other_account, step(5, other_account))
    resp = await client.post(
        "/api/webhooks", json={**WEBHOOK, "escalationPolicyId": theirs["id"]}, headers=account.headers
    )
    assert resp.status == 400
    assert (await resp.json())["error"].startswith("escalationPolicyId ")


async def test_roles_viewers_read_responders_escalate_admins_write_outsiders_see_nothing(
    client: TestClient, pool: asyncpg.Pool, account: Account, other_account: Account
) -> None:
    viewer, responder = await new_account(pool), await new_account(pool)
    team = await new_team(client, account, members={"viewer": viewer, "responder": responder})
    policy = await new_policy(client, account, step(5, responder), step(5, account), team_id=team["id"])
    url = f"/api/escalation-policies/{policy['id']}"
    assert (await client.get(url, headers=viewer.headers)).status == 200
    for person in (viewer, responder):
        for method, path, body in (
            (
                "POST",
                "/api/escalation-policies",
                {"name": "X", "teamId": team["id"], "steps": [step(5, person)]},
            ),
            ("PATCH", url, {"name": "mine"}),
            ("DELETE", url, None),
        ):
            resp = await client.request(method, path, json=body, headers=person.headers)
            assert resp.status == 403, (method, path, await resp.text())
            assert_error(await resp.json(), "INSUFFICIENT_PERMISSIONS")
    for method in ("GET", "PATCH", "DELETE"):
        resp = await client.request(method, url, json={"name": "x"}, headers=other_account.headers)
        assert resp.status == 404
    listed = await (await client.get("/api/escalation-policies", headers=other_account.headers)).json()
    assert policy["id"] not in [p["id"] for p in listed["escalation_policies"]]

    webhook = await create(
        client, account, {**WEBHOOK, "teamId": team["id"], "escalationPolicyId": policy["id"]}
    )
    incident = await open_incident(pool, webhook, datetime.now(UTC))
    escalate = f"/api/incidents/{incident}/escalate"
    resp = await client.post(escalate, headers=viewer.headers)
    assert resp.status == 403
    assert_error(await resp.json(), "INSUFFICIENT_PERMISSIONS")
    assert (await client.post(escalate, headers=other_account.headers)).status == 404
    resp = await client.post(escalate, headers=responder.headers)
    assert resp.status == 200, await resp.text()
    shown = (await resp.json())["incident"]
    assert shown["escalation_step"] == 0 and shown["escalation_policy_id"] == policy["id"]
    assert [a["user_id"] for a in shown["assigned_to"]] == [str(responder.user.id)]
    resp = await client.post(escalate, headers=responder.headers)
    assert [a["user_id"] for a in (await resp.json())["incident"]["assigned_to"]] == [str(account.user.id)]

    reassign = f"/api/incidents/{incident}/reassign"
    resp = await client.post(reassign, json={"userId": str(viewer.user.id)}, headers=viewer.headers)
    assert resp.status == 403
    resp = await client.post(reassign, json={"userId": str(other_account.user.id)}, headers=responder.headers)
    assert resp.status == 400
    assert (await resp.json())["error"].startswith("userId ")
    resp = await client.post(reassign, json={}, headers=responder.headers)
    assert resp.status == 400
    resp = await client.post(reassign, json={"userId": str(viewer.user.id)}, headers=responder.headers)
    assert resp.status == 200, await resp.text()
    shown = (await resp.json())["incident"]
    assert [a["user_id"] for a in shown["assigned_to"]] == [str(viewer.user.id)]
    assert any(
        e["kind"] == "reassigned" and e["user_id"] == str(responder.user.id) for e in shown["timeline"]
    )
    assert shown["next_escalation_at"] is not None

    async with pool.acquire() as conn:
        await actions.resolve(conn, account.user.id, incident, datetime.now(UTC))
    resp = await client.post(escalate, headers=responder.headers)
    assert resp.status == 409
    assert_error(await resp.json(), "INCIDENT_NOT_TRIGGERED")


async def test_an_incident_without_a_policy_cannot_be_escalated(
    client: TestClient, pool: asyncpg.Pool, account: Account
) -> None:
    webhook = await create(client, account, WEBHOOK)
    incident = await open_incident(pool, webhook, datetime.now(UTC))
    resp = await client.post(f"/api/incidents/{incident}/escalate", headers=account.headers)
    assert resp.status == 409
    assert_error(await resp.json(), "NO_ESCALATION_POLICY")
    shown = await (await client.get(f"/api/incidents/{incident}", headers=account.headers)).json()
    assert shown["incident"]["escalation_policy_id"] is None and shown["incident"]["assigned_to"] == []
    async with pool.acquire() as conn:
        await actions.resolve(conn, account.user.id, incident, datetime.now(UTC))
