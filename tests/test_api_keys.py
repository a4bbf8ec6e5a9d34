"""API keys: listed without their secrets, shown once, revoked at once, stored only as hashes."""

from __future__ import annotations

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from tests.support.factories import Account, assert_error
from tests.support.sessions import PASSWORD, log_in, web_user


async def test_create_list_use_revoke(client: TestClient, account: Account) -> None:
    resp = await client.post("/api/api-keys", json={"name": "ci"}, headers=account.headers)
    assert resp.status == 201, await resp.text()
    created = (await resp.json())["api_key"]
    secret = created["key"]
    assert secret.startswith("md_live_") and len(secret) > 40
    assert secret.startswith(created["prefix"]) and len(created["prefix"]) < 20

    listing = await (await client.get("/api/api-keys", headers=account.headers)).json()
    assert listing["total"] == 2  # the fixture's key and this one
    assert [k["name"] for k in listing["api_keys"]] == ["test", "ci"]
    assert all("key" not in k and "secret_hash" not in k for k in listing["api_keys"])
    assert secret not in str(listing)

    new_key = {"Authorization": f"Bearer {secret}"}
    assert (await client.get("/api/webhooks", headers=new_key)).status == 200
    used = await (await client.get("/api/api-keys", headers=account.headers)).json()
    assert used["api_keys"][1]["last_used_at"] is not None

    resp = await client.delete(f"/api/api-keys/{created['id']}", headers=account.headers)
    assert resp.status == 200
    resp = await client.get("/api/webhooks", headers=new_key)
    assert resp.status == 401
    assert_error(await resp.json(), "INVALID_API_KEY")
    again = await client.delete(f"/api/api-keys/{created['id']}", headers=account.headers)
    assert again.status == 404
    assert (await (await client.get("/api/api-keys", headers=account.headers)).json())["total"] == 1


async def test_a_key_can_revoke_itself(client: TestClient, account: Account) -> None:
    listing = await (await client.get("/api/api-keys", headers=account.headers)).json()
    resp = await client.delete(f"/api/api-keys/{listing['api_keys'][0]['id']}", headers=account.headers)
    assert resp.status == 200
    assert (await client.get("/api/api-keys", headers=account.headers)).status == 401


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "name"),
        ({"name": ""}, "name"),
        ({"name": "x" * 101}, "name"),
        ({"name": "a", "scope": "all"}, "scope"),
    ],
)
async def test_bad_create_bodies(client: TestClient, account: Account, body: dict, field: str) -> None:
    resp = await client.post("/api/api-keys", json=body, headers=account.headers)
    assert resp.status == 400
    assert field in (await resp.json())["error"]


@pytest.mark.parametrize("query", ["limit=0", "limit=101", "limit=x", "offset=-1"])
async def test_page_sizes_are_bounded(client: TestClient, account: Account, query: str) -> None:
    resp = await client.get(f"/api/api-keys?{query}", headers=account.headers)
    assert resp.status == 400


async def test_pages(client: TestClient, account: Account) -> None:
    for n in range(3):
        await client.post("/api/api-keys", json={"name": f"k{n}"}, headers=account.headers)
    page = await (await client.get("/api/api-keys?limit=2&offset=1", headers=account.headers)).json()
    assert page["total"] == 4 and [k["name"] for k in page["api_keys"]] == ["k0", "k1"]


async def test_malformed_id_is_not_found(client: TestClient, account: Account) -> None:
    resp = await client.delete("/api/api-keys/not-a-uuid", headers=account.headers)
    assert resp.status == 404


async def test_the_database_holds_no_plaintext_secret(
    client: TestClient, pool: asyncpg.Pool, account: Account
) -> None:
    """Read every row of users and api_keys: neither a password nor a key appears, in any encoding."""
    who = await web_user(pool)
    await log_in(client, who)
    created = await (await client.post("/api/api-keys", json={"name": "x"}, headers=account.headers)).json()
    secrets_ = [PASSWORD, account.api_key, created["api_key"]["key"]]
    async with pool.acquire() as conn:
        dump = [
            str(dict(r))
            for table in ("users", "api_keys")
            for r in await conn.fetch(f"SELECT * FROM {table}")
        ]
        hashes = await conn.fetch("SELECT password_hash FROM users WHERE id = $1", who.user.id)
    text = "\n".join(dump)
    for secret in secrets_:
        assert secret not in text
        assert secret.encode().hex() not in text
        assert secret[len("md_live_") :] not in text
    assert hashes[0]["password_hash"].startswith("$argon2id$")
