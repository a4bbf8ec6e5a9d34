"""Contact methods and notification rules as a user meets them: the defaults every new user has,
adding, changing and deleting methods and rules through the API, and what the escalation engine
will be told when it pages that user (notification_plan)."""

from __future__ import annotations

from datetime import UTC, datetime

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from engine.auth.users import create_user
from engine.oncall import contacts
from engine.oncall.notification_rules import SKIP_UNVERIFIED, PlannedContact, notification_plan
from tests.support.factories import Account, assert_error


async def _methods(client: TestClient, account: Account) -> list[dict]:
    resp = await client.get("/api/me/contact-methods", headers=account.headers)
    assert resp.status == 200
    return (await resp.json())["contact_methods"]


async def _rules(client: TestClient, account: Account) -> list[dict]:
    resp = await client.get("/api/me/notification-rules", headers=account.headers)
    assert resp.status == 200
    return (await resp.json())["notification_rules"]


async def test_a_new_user_is_reached_as_pagerduty_would_by_default(pool: asyncpg.Pool) -> None:
    """Push and email at once, SMS after a minute, a call after three; the login email verified,
    the phone not (so its rules are skipped until it is)."""
    async with pool.acquire() as conn:
        user = await create_user(conn, "Dana@Example.COM", phone="+1 (415) 555-0177")
        await conn.execute("UPDATE users SET push_topic = 'dana-pages' WHERE id = $1", user.id)
        plan = await notification_plan(conn, user.id)
        methods = {m.type: m for m in await contacts.list_methods(conn, user.id)}
    assert {kind: m.target for kind, m in methods.items()} == {
        "EMAIL": "Dana@example.com",
        "SMS": "+14155550177",
        "CALL": "+14155550177",
    }  # the push topic was set after the user was made: methods do not follow the profile
    assert methods["EMAIL"].verified_at is not None
    assert methods["SMS"].verified_at is None and methods["CALL"].verified_at is None
    assert plan == [
        PlannedContact(0, methods["EMAIL"].id, "EMAIL", "Dana@example.com", None),
        PlannedContact(1, methods["SMS"].id, "SMS", "+14155550177", SKIP_UNVERIFIED),
        PlannedContact(3, methods["CALL"].id, "CALL", "+14155550177", SKIP_UNVERIFIED),
    ]


async def test_push_and_email_both_go_at_once(client: TestClient, pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        async with conn.transaction():
            user = await create_user(conn, "push-first@example.com")
            await contacts.create_defaults(
                conn, user.id, email=user.email, phone=None, push_topic="pf-topic", now=datetime.now(UTC)
            )
        plan = await notification_plan(conn, user.id)
    assert sorted((p.delay_minutes, p.type, p.skipped_reason) for p in plan) == [
        (0, "EMAIL", None),
        (0, "PUSH_NOTIF", None),
    ]


async def test_a_sign_up_rolled_back_leaves_no_contact_methods(pool: asyncpg.Pool) -> None:
    """The defaults are written in the user's own transaction: a sign-up that fails later (its
    password, its personal team...) leaves neither the user nor their methods behind."""
    async with pool.acquire() as conn:
        before = await conn.fetchval("SELECT count(*) FROM contact_methods")
        with pytest.raises(RuntimeError):
            async with conn.transaction():
                await create_user(conn, "rolled-back@example.com", phone="+14155550111")
                assert await conn.fetchval("SELECT count(*) FROM contact_methods") == before + 3
                raise RuntimeError("a later step of the sign-up failed")
        assert await conn.fetchval("SELECT count(*) FROM users WHERE email = 'rolled-back@example.com'") == 0
        assert await conn.fetchval("SELECT count(*) FROM contact_methods") == before


async def test_add_change_and_delete_a_contact_method(client: TestClient, account: Account) -> None:
    resp = await client.post(
        "/api/me/contact-methods", json={"type": "SMS", "target": "+44 20 7946 0958"}, headers=account.headers
    )
    assert resp.status == 201, await resp.text()
    method = (await resp.json())["contact_method"]
    assert method["type"] == "SMS" and method["target"] == "+442079460958"
    assert (
        method["verified"] is False and method["verified_at"] is None and method["needs_verification"] is True
    )
    assert method in await _methods(client, account)

    resp = await client.post(
        "/api/me/notification-rules",
        json={"contactMethodId": method["id"], "delayMinutes": 10},
        headers=account.headers,
    )
    assert resp.status == 201, await resp.text()
    rule = (await resp.json())["notification_rule"]
    assert rule["contact_method_id"] == method["id"] and rule["delay_minutes"] == 10 and rule["type"] == "SMS"
    # in firing order: the defaults (0, 1, 3) then this one
    assert [r["delay_minutes"] for r in await _rules(client, account)] == [0, 1, 3, 10]

    resp = await client.patch(
        f"/api/me/contact-methods/{method['id']}", json={"target": "+442079460959"}, headers=account.headers
    )
    assert resp.status == 200
    assert (await resp.json())["contact_method"]["target"] == "+442079460959"
    assert [r["target"] for r in await _rules(client, account) if r["id"] == rule["id"]] == ["+442079460959"]

    resp = await client.delete(f"/api/me/contact-methods/{method['id']}", headers=account.headers)
    assert resp.status == 200 and (await resp.json())["deleted"] == method["id"]
    assert method["id"] not in [m["id"] for m in await _methods(client, account)]
    assert rule["id"] not in [r["id"] for r in await _rules(client, account)]  # its rules went with it
    resp = await client.delete(f"/api/me/contact-methods/{method['id']}", headers=account.headers)
    assert resp.status == 404
    assert_error(await resp.json(), "CONTACT_METHOD_NOT_FOUND")


async def test_delete_a_rule(client: TestClient, account: Account) -> None:
    rules = await _rules(client, account)
    resp = await client.delete(f"/api/me/notification-rules/{rules[0]['id']}", headers=account.headers)
    assert resp.status == 200
    assert [r["id"] for r in await _rules(client, account)] == [r["id"] for r in rules[1:]]
    resp = await client.delete(f"/api/me/notification-rules/{rules[0]['id']}", headers=account.headers)
    assert resp.status == 404
    assert_error(await resp.json(), "NOTIFICATION_RULE_NOT_FOUND")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"type": "SMS", "target": "0415 555 0123"}, "target"),
        ({"type": "CALL", "target": 14155550123}, "target"),
        ({"type": "EMAIL", "target": "not an address"}, "target"),
        ({"type": "PUSH_NOTIF", "target": "no spaces allowed"}, "target"),
        ({"type": "PUSH_NOTIF"}, "target"),
        ({"type": "PAGER", "target": "x"}, "type"),
        ({"target": "+14155550123"}, "type"),
        ({"type": "SMS", "target": "+14155550123", "verified": True}, "verified"),
    ],
)
async def test_a_bad_contact_method_is_a_400_naming_the_field(
    client: TestClient, account: Account, body: dict, field: str
) -> None:
    resp = await client.post("/api/me/contact-methods", json=body, headers=account.headers)
    assert resp.status == 400
    data = await resp.json()
    assert_error(data, "VALIDATION_ERROR")
    assert field in data["error"], data["error"]


async def test_a_method_cannot_change_type_or_take_a_bad_target(client: TestClient, account: Account) -> None:
    sms = next(m for m in await _methods(client, account) if m["type"] == "SMS")
    for body, field in (({"type": "CALL"}, "type"), ({"target": "nope"}, "target"), ({"name": "x"}, "name")):
        resp = await client.patch(f"/api/me/contact-methods/{sms['id']}", json=body, headers=account.headers)
        assert resp.status == 400
        data = await resp.json()
        assert field in data["error"], data
    assert sms in await _methods(client, account)  # unchanged


async def test_the_same_method_twice_is_a_conflict(client: TestClient, account: Account) -> None:
    body = {"type": "CALL", "target": "+1 415 555 0100"}  # the default CALL method's number
    resp = await client.post("/api/me/contact-methods", json=body, headers=account.headers)
    assert resp.status == 409
    assert_error(await resp.json(), "CONTACT_METHOD_EXISTS")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"delayMinutes": 5}, "contactMethodId"),
        ({"contactMethodId": "not-a-uuid", "delayMinutes": 5}, "contactMethodId"),
        ({"contactMethodId": None, "delayMinutes": 5}, "contactMethodId"),
        ({"contactMethodId": "METHOD"}, "delayMinutes"),
        ({"contactMethodId": "METHOD", "delayMinutes": -1}, "delayMinutes"),
        ({"contactMethodId": "METHOD", "delayMinutes": 1441}, "delayMinutes"),
        ({"contactMethodId": "METHOD", "delayMinutes": 2.5}, "delayMinutes"),
        ({"contactMethodId": "METHOD", "delayMinutes": True}, "delayMinutes"),
        ({"contactMethodId": "METHOD", "delayMinutes": "5"}, "delayMinutes"),
    ],
)
async def test_a_bad_rule_is_a_400_naming_the_field(
    client: TestClient, account: Account, body: dict, field: str
) -> None:
    method_id = (await _methods(client, account))[0]["id"]
    body = {k: (method_id if v == "METHOD" else v) for k, v in body.items()}
    resp = await client.post("/api/me/notification-rules", json=body, headers=account.headers)
    assert resp.status == 400
    data = await resp.json()
    assert_error(data, "VALIDATION_ERROR")
    assert data["error"].startswith(field), data["error"]


async def test_a_rule_on_someone_elses_method_is_refused_and_a_repeat_is_a_conflict(
    client: TestClient, account: Account, other_account: Account
) -> None:
    theirs = (await _methods(client, other_account))[0]["id"]
    resp = await client.post(
        "/api/me/notification-rules",
        json={"contactMethodId": theirs, "delayMinutes": 5},
        headers=account.headers,
    )
    assert resp.status == 400
    assert (await resp.json())["error"].startswith("contactMethodId")
    assert len(await _rules(client, other_account)) == 3  # untouched

    mine = next(m["id"] for m in await _methods(client, account) if m["type"] == "EMAIL")
    body = {"contactMethodId": mine, "delayMinutes": 0}  # the default rule of that method
    resp = await client.post("/api/me/notification-rules", json=body, headers=account.headers)
    assert resp.status == 409
    assert_error(await resp.json(), "NOTIFICATION_RULE_EXISTS")


async def test_changing_the_profile_phone_leaves_a_verified_number_alone(
    client: TestClient, account: Account, pool: asyncpg.Pool
) -> None:
    """Decision: contact methods are the user's own after sign-up; the profile phone is only the
    default target of webhooks. A verified number is never re-pointed behind the user's back."""
    sms = next(m for m in await _methods(client, account) if m["type"] == "SMS")
    async with pool.acquire() as conn:
        await conn.execute("UPDATE contact_methods SET verified_at = now() WHERE id = $1::uuid", sms["id"])
    resp = await client.patch("/api/auth/me", json={"phone": "+14155550999"}, headers=account.headers)
    assert resp.status == 200
    after = next(m for m in await _methods(client, account) if m["id"] == sms["id"])
    assert after["target"] == "+14155550100" and after["verified"] is True
    assert "+14155550999" not in [m["target"] for m in await _methods(client, account)]


async def test_a_new_number_starts_unverified(
    client: TestClient, account: Account, pool: asyncpg.Pool
) -> None:
    sms = next(m for m in await _methods(client, account) if m["type"] == "SMS")
    async with pool.acquire() as conn:
        await conn.execute("UPDATE contact_methods SET verified_at = now() WHERE id = $1::uuid", sms["id"])
    resp = await client.patch(
        f"/api/me/contact-methods/{sms['id']}", json={"target": "+14155550998"}, headers=account.headers
    )
    method = (await resp.json())["contact_method"]
    assert method["verified"] is False and method["needs_verification"] is True
    async with pool.acquire() as conn:
        plan = await notification_plan(conn, account.user.id)
    assert [p.skipped_reason for p in plan if str(p.contact_method_id) == method["id"]] == [SKIP_UNVERIFIED]


async def test_an_email_method_at_the_login_address_is_verified_others_are_paged_anyway(
    client: TestClient, account: Account, pool: asyncpg.Pool
) -> None:
    resp = await client.post(
        "/api/me/contact-methods",
        json={"type": "EMAIL", "target": "pager@example.org"},
        headers=account.headers,
    )
    other = (await resp.json())["contact_method"]
    assert other["verified"] is False and other["needs_verification"] is False
    await client.post(
        "/api/me/notification-rules",
        json={"contactMethodId": other["id"], "delayMinutes": 2},
        headers=account.headers,
    )
    async with pool.acquire() as conn:
        plan = await notification_plan(conn, account.user.id)
    assert [(p.delay_minutes, p.type, p.target, p.skipped_reason) for p in plan] == [
        (0, "EMAIL", account.user.email, None),
        (1, "SMS", "+14155550100", SKIP_UNVERIFIED),
        (2, "EMAIL", "pager@example.org", None),
        (3, "CALL", "+14155550100", SKIP_UNVERIFIED),
    ]
