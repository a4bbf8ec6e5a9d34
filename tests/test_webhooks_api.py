"""The /api/webhooks routes as a user drives them with curl: shapes, validation, ownership."""

from __future__ import annotations

import re
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.support.factories import (
    FULL,
    Account,
    assert_error,
    counts,
    create,
)


async def test_create_returns_the_seed_shape(client: TestClient, account: Account) -> None:
    webhook = await create(client, account)
    assert webhook["name"] == "Production Alerts"
    assert webhook["alias"] == "production-alerts"
    assert webhook["status"] == "ACTIVE"
    assert webhook["notification_types"] == ["EMAIL", "SMS", "PUSH_NOTIF", "CALL"]
    assert webhook["target_channels"]["call"] == ["+14155550124", "+14155550125"]
    assert webhook["statistics"] == counts(0, 0, 0)
    token = webhook["webhook_url"].removeprefix("http://monoduty.test/")
    # at least 128 bits of URL-safe randomness
    assert re.fullmatch(r"[A-Za-z0-9_-]{22,}", token), token


async def test_tokens_differ_and_aliases_stay_unique(client: TestClient, account: Account) -> None:
    first = await create(client, account)
    second = await create(client, account)
    assert first["webhook_url"] != second["webhook_url"]
    assert second["alias"] == "production-alerts-2"
    resp = await client.post(
        "/api/webhooks", json={**FULL, "alias": "production-alerts"}, headers=account.headers
    )
    assert resp.status == 409
    assert_error(await resp.json(), "ALIAS_TAKEN")


async def test_list_matches_the_seed_example(client: TestClient, account: Account) -> None:
    await create(client, account)
    await create(client, account, {**FULL, "name": "Staging"})
    resp = await client.get("/api/webhooks", headers=account.headers)
    data = await resp.json()
    assert resp.status == 200
    assert data["success"] is True
    assert data["total"] == 2
    assert [w["name"] for w in data["webhooks"]] == ["Production Alerts", "Staging"]


async def test_get_patch_delete(client: TestClient, account: Account) -> None:
    webhook = await create(client, account)
    url = f"/api/webhooks/{webhook['id']}"
    resp = await client.get(url, headers=account.headers)
    assert (await resp.json())["webhook"]["id"] == webhook["id"]

    patch = {
        "name": "Prod",
        "description": None,
        "alias": "prod",
        "status": "PAUSED",
        "notificationTypes": ["EMAIL"],
        "targetChannels": {"email": ["a@example.com", "b@example.com"]},
    }
    resp = await client.patch(url, json=patch, headers=account.headers)
    assert resp.status == 200, await resp.text()
    updated = (await resp.json())["webhook"]
    assert (updated["name"], updated["alias"], updated["status"]) == ("Prod", "prod", "PAUSED")
    assert updated["description"] is None
    assert updated["notification_types"] == ["EMAIL"]
    assert updated["target_channels"]["email"] == ["a@example.com", "b@example.com"]
    assert updated["webhook_url"] == webhook["webhook_url"]

    resp = await client.patch(url, json={"status": "ACTIVE"}, headers=account.headers)
    assert (await resp.json())["webhook"]["name"] == "Prod"

    resp = await client.delete(url, headers=account.headers)
    assert resp.status == 200
    resp = await client.get(url, headers=account.headers)
    assert resp.status == 404
    assert_error(await resp.json(), "WEBHOOK_NOT_FOUND")


@pytest.mark.parametrize(
    ("body", "field_in_message"),
    [
        ({**FULL, "name": "ab"}, "name"),
        ({**FULL, "name": 12}, "name"),
        ({k: v for k, v in FULL.items() if k != "name"}, "name"),
        ({**FULL, "notificationTypes": []}, "notificationTypes"),
        ({**FULL, "notificationTypes": ["FAX"]}, "notificationTypes[0]"),
        ({**FULL, "notificationTypes": "EMAIL"}, "notificationTypes"),
        (
            {**FULL, "targetChannels": {**FULL["targetChannels"], "email": "not-an-email"}},
            "targetChannels.email",
        ),
        ({**FULL, "targetChannels": {**FULL["targetChannels"], "sms": "0123"}}, "targetChannels.sms"),
        ({**FULL, "targetChannels": {**FULL["targetChannels"], "push": "bad topic!"}}, "targetChannels.push"),
        ({**FULL, "targetChannels": {**FULL["targetChannels"], "fax": "1"}}, "fax"),
        ({**FULL, "targetChannels": "admin@company.com"}, "targetChannels"),
        ({**FULL, "alias": "Not An Alias!"}, "alias"),
        ({**FULL, "status": "DISABLED"}, "status"),
        ({**FULL, "colour": "red"}, "colour"),
    ],
)
async def test_bad_bodies_name_the_field(
    client: TestClient, account: Account, body: dict[str, Any], field_in_message: str
) -> None:
    resp = await client.post("/api/webhooks", json=body, headers=account.headers)
    assert resp.status == 400
    data = await resp.json()
    assert data["success"] is False
    assert field_in_message in data["error"], data["error"]


async def test_missing_target_falls_back_to_the_owner_or_names_the_field(
    client: TestClient, pool, account: Account
) -> None:
    from tests.conftest import new_account

    webhook = await create(client, account, {"name": "Fallback", "notificationTypes": ["EMAIL", "SMS"]})
    assert webhook["target_channels"]["email"] == [account.user.email]
    assert webhook["target_channels"]["sms"] == [account.user.phone]

    no_phone = await new_account(pool, phone=None)
    resp = await client.post(
        "/api/webhooks", json={"name": "Fallback", "notificationTypes": ["CALL"]}, headers=no_phone.headers
    )
    assert resp.status == 400
    assert "targetChannels.call" in (await resp.json())["error"]


async def test_malformed_json_is_a_clear_400(client: TestClient, account: Account) -> None:
    resp = await client.post(
        "/api/webhooks", data=b"{not json", headers={**account.headers, "Content-Type": "application/json"}
    )
    assert resp.status == 400
    assert_error(await resp.json(), "INVALID_JSON")
    resp = await client.post("/api/webhooks", json=["a list"], headers=account.headers)
    assert resp.status == 400
    assert_error(await resp.json(), "INVALID_BODY")


ROUTES = [
    ("GET", "/api/webhooks"),
    ("POST", "/api/webhooks"),
    ("GET", "/api/webhooks/{id}"),
    ("PATCH", "/api/webhooks/{id}"),
    ("DELETE", "/api/webhooks/{id}"),
    ("POST", "/api/webhooks/{id}/test"),
]


@pytest.mark.parametrize(("method", "path"), ROUTES)
@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer md_live_not-a-real-key"}, {"Authorization": "Basic Zm9vOmJhcg=="}],
)
async def test_every_route_needs_a_valid_key(
    client: TestClient, account: Account, method: str, path: str, headers: dict[str, str]
) -> None:
    webhook = await create(client, account)
    resp = await client.request(method, path.format(id=webhook["id"]), json=FULL, headers=headers)
    assert resp.status == 401
    data = await resp.json()
    assert data["success"] is False and data["code"] in ("UNAUTHORIZED", "INVALID_API_KEY")


@pytest.mark.parametrize(("method", "path"), [r for r in ROUTES if "{id}" in r[1]])
async def test_another_users_webhook_is_not_found(
    client: TestClient, account: Account, other_account: Account, method: str, path: str
) -> None:
    webhook = await create(client, account)
    resp = await client.request(
        method, path.format(id=webhook["id"]), json={"name": "mine now"}, headers=other_account.headers
    )
    assert resp.status == 404
    assert_error(await resp.json(), "WEBHOOK_NOT_FOUND")
    listing = await (await client.get("/api/webhooks", headers=other_account.headers)).json()
    assert listing["total"] == 0
    # and the owner's webhook is untouched
    mine = await (await client.get(f"/api/webhooks/{webhook['id']}", headers=account.headers)).json()
    assert mine["webhook"]["name"] == "Production Alerts"


async def test_malformed_id_is_not_found(client: TestClient, account: Account) -> None:
    resp = await client.get("/api/webhooks/not-a-uuid", headers=account.headers)
    assert resp.status == 404


async def test_a_channel_without_a_provider_is_refused_at_creation(services, account: Account) -> None:
    """Outside dev, a webhook on an unconfigured channel is a 400, never a silent drop later."""
    from engine.settings import Settings
    from tests.conftest import make_client

    bare = Settings(database_url=services.database_url, redis_url=services.redis_url, require_https=False)
    client = await make_client(bare)
    try:
        resp = await client.post("/api/webhooks", json=FULL, headers=account.headers)
        assert resp.status == 400
        data = await resp.json()
        assert_error(data, "CHANNEL_NOT_CONFIGURED")
        assert "EMAIL" in data["error"]
    finally:
        await client.close()
