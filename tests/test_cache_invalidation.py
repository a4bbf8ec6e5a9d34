"""Every API process caches webhook tokens and API keys (engine.local_cache): a change made
through one process takes effect in another well before the cache's own expiry, also when the
other process's invalidation channel was cut while the change was made."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from arq.connections import ArqRedis

from api.auth import CSRF_HEADER
from engine.alerts import inbound
from engine.auth import api_keys
from engine.auth.sessions import COOKIE_NAME
from tests.support.factories import Account
from tests.support.processes import ApiProcess, wait_until
from tests.support.services import Services
from tests.support.sessions import web_user

pytestmark = pytest.mark.slow  # two `monoduty api` processes

# Well under each cache's own expiry: only the invalidation can make a change visible this soon.
DEADLINE = min(inbound.LOCAL_SECONDS, api_keys.LOCAL_SECONDS) / 2
WEBHOOK = {"name": "Cached", "notificationTypes": ["PUSH_NOTIF"], "targetChannels": {"push": "ops"}}
ALERT = {"title": "disk full", "severity": "critical"}
# Plain HTTP on loopback; the waits below poll every 20 ms, more than the default limits allow.
# Push is configured (no worker runs: nothing is sent, port 9 is discard).
ENV = {
    "MONODUTY_REQUIRE_HTTPS": "off",
    "MONODUTY_NTFY_URL": "http://127.0.0.1:9",
    "MONODUTY_RATE_LIMIT_API": "100000/minute",
    "MONODUTY_RATE_LIMIT_INBOUND": "100000/minute",
}


@pytest.fixture
def two_apis(services: Services, tmp_path: Path) -> Iterator[tuple[ApiProcess, ApiProcess]]:
    first = ApiProcess(services, tmp_path / "first.log", **ENV)
    try:
        second = ApiProcess(services, tmp_path / "second.log", **ENV)
    except BaseException:
        first.stop()
        raise
    yield first, second
    first.stop()
    second.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def _status(http: aiohttp.ClientSession, method: str, url: str, **kwargs: Any) -> int:
    async with http.request(method, url, **kwargs) as response:
        return response.status


async def _answers(http: aiohttp.ClientSession, url: str, status: int, what: str) -> None:
    """Wait (no longer than DEADLINE) until an alert posted to ``url`` is answered ``status``."""

    async def answered() -> bool:
        return await _status(http, "POST", url, json=ALERT) == status

    await wait_until(answered, what, timeout=DEADLINE)


async def _webhook(http: aiohttp.ClientSession, api: ApiProcess, account: Account) -> tuple[str, str]:
    async with http.post(f"{api.url}/api/webhooks", json=WEBHOOK, headers=account.headers) as response:
        assert response.status == 201, await response.text()
        webhook = (await response.json())["webhook"]
    return webhook["id"], "/" + webhook["webhook_url"].rsplit("/", 1)[-1]


async def _patch(
    http: aiohttp.ClientSession, api: ApiProcess, account: Account, hook: str, **body: Any
) -> None:
    url = f"{api.url}/api/webhooks/{hook}"
    async with http.patch(url, json=body, headers=account.headers) as response:
        assert response.status == 200, await response.text()


async def test_a_webhook_change_in_one_process_holds_in_the_other(
    two_apis: tuple[ApiProcess, ApiProcess], http: aiohttp.ClientSession, account: Account
) -> None:
    first, second = two_apis
    hook, path = await _webhook(http, first, account)
    other = second.url + path
    for _ in range(3):  # the second process now holds the token in its cache
        assert await _status(http, "POST", other, json=ALERT) == 202

    await _patch(http, first, account, hook, status="PAUSED")
    assert await _status(http, "POST", first.url + path, json=ALERT) == 409  # at once where made
    await _answers(http, other, 409, "the other process to refuse alerts to the paused webhook")

    await _patch(http, first, account, hook, status="ACTIVE")
    await _answers(http, other, 202, "the other process to accept alerts again once resumed")

    await _patch(http, first, account, hook, signingSecret="s" * 32)
    await _answers(http, other, 401, "the other process to ask a signature once a secret is set")
    await _patch(http, first, account, hook, signingSecret=None)
    await _answers(http, other, 202, "the other process to take unsigned alerts once it is removed")

    async with http.delete(f"{first.url}/api/webhooks/{hook}", headers=account.headers) as response:
        assert response.status == 200, await response.text()
    await _answers(http, other, 404, "the other process to forget the deleted webhook")


async def test_a_revoked_key_is_refused_by_every_process(
    two_apis: tuple[ApiProcess, ApiProcess], http: aiohttp.ClientSession, account: Account
) -> None:
    first, second = two_apis
    async with http.post(
        f"{first.url}/api/api-keys", json={"name": "ci"}, headers=account.headers
    ) as response:
        assert response.status == 201, await response.text()
        made = (await response.json())["api_key"]
    headers = {"Authorization": f"Bearer {made['key']}"}
    for _ in range(3):  # cached by the second process
        assert await _status(http, "GET", f"{second.url}/api/webhooks", headers=headers) == 200

    async with http.patch(f"{first.url}/api/auth/me", json={"name": "Renamed"}, headers=account.headers) as r:
        assert r.status == 200, await r.text()

    async def renamed() -> bool:
        async with http.get(f"{second.url}/api/auth/me", headers=headers) as response:
            return (await response.json())["user"]["name"] == "Renamed"

    await wait_until(renamed, "the other process to show the owner's new name", timeout=DEADLINE)

    revoke = f"{first.url}/api/api-keys/{made['id']}"
    assert await _status(http, "DELETE", revoke, headers=account.headers) == 200
    assert await _status(http, "GET", f"{first.url}/api/webhooks", headers=headers) == 401

    async def refused() -> bool:
        return await _status(http, "GET", f"{second.url}/api/webhooks", headers=headers) == 401

    await wait_until(refused, "the other process to refuse the revoked key", timeout=DEADLINE)


async def test_a_profile_change_shows_in_every_process_to_a_web_session(
    two_apis: tuple[ApiProcess, ApiProcess], http: aiohttp.ClientSession, pool: asyncpg.Pool
) -> None:
    first, second = two_apis
    who = await web_user(pool)
    login = {"email": who.email, "password": who.password}
    async with http.post(f"{first.url}/api/auth/login", json=login) as response:
        assert response.status == 200, await response.text()
        csrf = (await response.json())["csrf_token"]
        cookie = response.cookies[COOKIE_NAME].value
    session = {"Cookie": f"{COOKIE_NAME}={cookie}"}

    async def name_seen() -> str | None:
        async with http.get(f"{second.url}/api/auth/me", headers=session) as response:
            assert response.status == 200, await response.text()
            return (await response.json())["user"]["name"]

    for _ in range(3):  # the second process now holds the user in its cache
        assert await name_seen() != "Renamed"
    change = {"name": "Renamed"}
    async with http.patch(
        f"{first.url}/api/auth/me", json=change, headers={**session, CSRF_HEADER: csrf}
    ) as r:
        assert r.status == 200, await r.text()

    async def renamed() -> bool:
        return await name_seen() == "Renamed"

    await wait_until(renamed, "the other process to show the new name to the session", timeout=DEADLINE)


async def test_a_change_whose_message_was_lost_holds_once_the_channel_is_back(
    two_apis: tuple[ApiProcess, ApiProcess],
    http: aiohttp.ClientSession,
    account: Account,
    redis: ArqRedis,
    pool: asyncpg.Pool,
) -> None:
    """A change published while a process was not subscribed never reaches it. Here the change is
    made with no message at all (the shared cache emptied, nothing published); cutting the
    processes' subscriptions must then make them drop what they cached."""
    first, second = two_apis
    hook, path = await _webhook(http, first, account)
    other = second.url + path
    for _ in range(3):
        assert await _status(http, "POST", other, json=ALERT) == 202
    async with pool.acquire() as conn:
        await conn.execute("UPDATE webhooks SET status = 'PAUSED' WHERE id = $1", uuid.UUID(hook))
    await redis.delete(inbound.cache_key(path.removeprefix("/")))
    # Nobody told the process: it still answers from its cache (this is what the cache saves).
    assert await _status(http, "POST", other, json=ALERT) == 202

    db = str(redis.connection_pool.connection_kwargs.get("db", 0))
    clients = await redis.client_list()
    subscribers = [c for c in clients if c.get("db") == db and c.get("sub") not in (None, "0")]
    assert len(subscribers) >= 2, "each API process subscribes to the invalidation channel"
    for subscriber in subscribers:  # only this session's Redis database: other suites share the server
        await redis.client_kill_filter(_id=subscriber["id"])

    await _answers(http, other, 409, "the other process to drop its cache when its channel came back")
    assert "cache invalidation channel lost" in second.output()
