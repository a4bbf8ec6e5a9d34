"""Signed inbound webhooks: valid signatures in, everything else 401 with nothing queued."""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
import redis as redis_sync
from aiohttp.test_utils import TestClient
from arq.connections import ArqRedis
from standardwebhooks import Webhook as StandardWebhook

from engine.alerts.signing import TOLERANCE
from engine.settings import RateLimit, Settings
from tests.support.factories import (
    BODY,
    FULL,
    GITHUB_SECRET,
    WHSEC,
    Account,
    assert_error,
    create,
    github,
    make_client,
    path_of,
    run_worker,
    signed_webhook,
    standard,
)
from tests.support.faults import RedisServer


async def test_valid_signatures_are_accepted(client: TestClient, account: Account, redis: ArqRedis) -> None:
    webhook = await signed_webhook(client, account)
    resp = await client.post(path_of(webhook), data=BODY, headers=standard(BODY))
    assert resp.status == 202, await resp.text()
    # several signatures (key rotation): any valid v1 passes
    headers = standard(BODY)
    headers["webhook-signature"] = "v1,bm90IGl0 " + headers["webhook-signature"]
    assert (await client.post(path_of(webhook), data=BODY, headers=headers)).status == 202

    gh = await signed_webhook(client, account, GITHUB_SECRET)
    assert (await client.post(path_of(gh), data=BODY, headers=github(BODY))).status == 202
    assert await redis.zcard("arq:queue") == 3


def _wrong_secret() -> dict[str, str]:
    return standard(BODY, secrets.token_bytes(24))


def _stale() -> dict[str, str]:
    return standard(BODY, at=int(time.time()) - TOLERANCE - 5)


def _future() -> dict[str, str]:
    return standard(BODY, at=int(time.time()) + TOLERANCE + 5)


def _other_body() -> dict[str, str]:
    return standard(b'{"title": "something else"}')


def _no_id() -> dict[str, str]:
    return {k: v for k, v in standard(BODY).items() if k != "webhook-id"}


def _wrong_version() -> dict[str, str]:
    headers = standard(BODY)
    headers["webhook-signature"] = headers["webhook-signature"].replace("v1,", "v1a,")
    return headers


def _github_wrong() -> dict[str, str]:
    return github(BODY, "another secret entirely")


@pytest.mark.parametrize(
    ("make_headers", "code"),
    [
        (_wrong_secret, "INVALID_SIGNATURE"),
        (_stale, "STALE_SIGNATURE"),
        (_future, "STALE_SIGNATURE"),
        (_other_body, "INVALID_SIGNATURE"),
        (_no_id, "INVALID_SIGNATURE"),
        (_wrong_version, "INVALID_SIGNATURE"),
        (_github_wrong, "INVALID_SIGNATURE"),
        (lambda: {"Content-Type": "application/json"}, "SIGNATURE_REQUIRED"),
    ],
)
async def test_bad_signatures_are_refused_and_nothing_is_queued(
    client: TestClient, account: Account, redis: ArqRedis, make_headers: Any, code: str
) -> None:
    webhook = await signed_webhook(client, account)
    resp = await client.post(path_of(webhook), data=BODY, headers=make_headers())
    assert resp.status == 401
    assert_error(await resp.json(), code)
    assert await redis.zcard("arq:queue") == 0


async def test_a_retry_with_the_same_id_answers_the_first_alert_and_queues_nothing_more(
    client: TestClient, account: Account, redis: ArqRedis, pool: asyncpg.Pool, settings: Settings
) -> None:
    """Standard Webhooks keeps webhook-id across retries, each with a fresh timestamp and signature."""
    webhook = await signed_webhook(client, account)
    msg_id = f"msg_{uuid.uuid4().hex}"
    first = await client.post(path_of(webhook), data=BODY, headers=standard(BODY, msg_id=msg_id))
    assert first.status == 202
    alert_id = (await first.json())["alert_id"]
    retries = [standard(BODY, msg_id=msg_id, at=int(time.time()) - 30), standard(BODY, msg_id=msg_id)]
    for headers in [*retries, retries[0]]:  # the last one a replay of a request seen already
        resp = await client.post(path_of(webhook), data=BODY, headers=headers)
        assert resp.status == 202
        assert (await resp.json())["alert_id"] == alert_id
    assert await redis.zcard("arq:queue") == 1
    await run_worker(settings)
    # once processed, and after the record of the id has gone, a late retry still makes no second alert
    await redis.delete(*await redis.keys("monoduty:webhook-msg:*"))
    late = await client.post(path_of(webhook), data=BODY, headers=standard(BODY, msg_id=msg_id))
    assert (late.status, (await late.json())["alert_id"]) == (202, alert_id)
    await run_worker(settings)
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM alerts WHERE webhook_id = $1", webhook["id"]) == 1
    stats = await (await client.get(f"/api/webhooks/{webhook['id']}", headers=account.headers)).json()
    assert stats["webhook"]["statistics"]["total_calls"] == 1


async def test_deliveries_of_one_id_at_once_queue_one_alert(
    client: TestClient, account: Account, redis: ArqRedis
) -> None:
    webhook = await signed_webhook(client, account)
    msg_id = f"msg_{uuid.uuid4().hex}"
    answers = await asyncio.gather(
        *(client.post(path_of(webhook), data=BODY, headers=standard(BODY, msg_id=msg_id)) for _ in range(8))
    )
    assert [r.status for r in answers] == [202] * 8
    assert len({(await r.json())["alert_id"] for r in answers}) == 1
    assert await redis.zcard("arq:queue") == 1


async def test_the_id_is_recorded_only_once_the_alert_is_queued(
    settings: Settings, account: Account, tmp_path: Path
) -> None:
    """A failure between the checks and the enqueue must leave the sender's retry free to queue it."""
    server = RedisServer(tmp_path / "redis")
    server.start()
    admin = redis_sync.Redis.from_url(server.url)
    # Monoduty's own Redis user; for a while it may not write the queue's keys (arq:*), so the
    # enqueue fails after every check passed, as it would if Redis went away at that moment.
    admin.execute_command("ACL", "SETUSER", "monoduty", "on", ">pw", "~*", "+@all")
    url = server.url.replace("redis://", "redis://monoduty:pw@")
    client = await make_client(settings.with_(redis_url=url))
    try:
        webhook = await signed_webhook(client, account)
        headers = standard(BODY)
        admin.execute_command("ACL", "SETUSER", "monoduty", "resetkeys", "~monoduty:*", "%R~arq:*")
        failed = await client.post(path_of(webhook), data=BODY, headers=headers)
        assert failed.status >= 500
        admin.execute_command("ACL", "SETUSER", "monoduty", "resetkeys", "~*")
        retry = standard(BODY, msg_id=headers["webhook-id"])
        resp = await client.post(path_of(webhook), data=BODY, headers=retry)
        assert resp.status == 202, await resp.text()
        assert admin.zcard("arq:queue") == 1
    finally:
        await client.close()
        admin.close()
        server.stop()


async def test_unsigned_junk_cannot_silence_a_signed_webhook(
    settings: Settings, account: Account, redis: ArqRedis
) -> None:
    """Junk counts against its sender's address, not against the webhook's inbound limit."""
    client = await make_client(settings.with_(rate_limit_inbound=RateLimit(5, 60)))
    try:
        webhook = await signed_webhook(client, account)
        junk = [
            await client.post(path_of(webhook), data=BODY, headers=_wrong_secret() if n % 2 else {})
            for n in range(12)
        ]
        assert [r.status for r in junk] == [401] * 5 + [429] * 7  # the flooding address is refused
        assert_error(await junk[-1].json(), "RATE_LIMITED")
        assert "Retry-After" in junk[-1].headers
        # The real sender, from another address, still gets through, up to the webhook's own limit.
        connector = aiohttp.TCPConnector(local_addr=("127.0.0.2", 0))
        async with aiohttp.ClientSession(connector=connector) as sender:
            url = str(client.make_url(path_of(webhook)))
            statuses = []
            for _ in range(6):
                async with sender.post(url, data=BODY, headers=standard(BODY)) as resp:
                    statuses.append(resp.status)
        assert statuses == [202] * 5 + [429]
        assert await redis.zcard("arq:queue") == 5
    finally:
        await client.close()


# The example secret of the standardwebhooks package's README: base64, without the whsec_ prefix.
LIBRARY_README_SECRET = "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


@pytest.mark.parametrize(
    "secret",
    [
        LIBRARY_README_SECRET,
        WHSEC,
        "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode(),
        # unpadded base64, as the reference libraries accept
        "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode().rstrip("="),
    ],
)
async def test_the_standardwebhooks_package_signs_what_we_accept(
    client: TestClient, account: Account, redis: ArqRedis, secret: str
) -> None:
    webhook = await signed_webhook(client, account, secret)
    msg_id = f"msg_{uuid.uuid4().hex}"
    now = datetime.now(UTC)
    signature = StandardWebhook(secret).sign(msg_id, now, BODY.decode())
    headers = {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": signature,
        "Content-Type": "application/json",
    }
    resp = await client.post(path_of(webhook), data=BODY, headers=headers)
    assert resp.status == 202, await resp.text()
    assert await redis.zcard("arq:queue") == 1


@pytest.mark.parametrize(
    ("secret", "key"),
    [
        # stored before Monoduty read prefix-less secrets as base64: their text still signs
        (LIBRARY_README_SECRET, LIBRARY_README_SECRET.encode()),
        ("a passphrase, not base64 at all", b"a passphrase, not base64 at all"),
    ],
)
async def test_prefix_less_secrets_still_accept_their_text_as_the_key(
    client: TestClient, account: Account, secret: str, key: bytes
) -> None:
    webhook = await signed_webhook(client, account, secret)
    resp = await client.post(path_of(webhook), data=BODY, headers=standard(BODY, key))
    assert resp.status == 202, await resp.text()


async def test_github_signatures_in_upper_case_hex_are_accepted(client: TestClient, account: Account) -> None:
    webhook = await signed_webhook(client, account, GITHUB_SECRET)
    headers = github(BODY)
    headers["X-Hub-Signature-256"] = (
        "sha256=" + headers["X-Hub-Signature-256"].removeprefix("sha256=").upper()
    )
    assert (await client.post(path_of(webhook), data=BODY, headers=headers)).status == 202


async def test_secret_can_be_changed_and_removed(
    client: TestClient, account: Account, redis: ArqRedis
) -> None:
    webhook = await create(client, account)
    assert webhook["signed"] is False
    url = f"/api/webhooks/{webhook['id']}"
    assert (await client.post(path_of(webhook), json={"title": "warm the cache"})).status == 202
    resp = await client.patch(url, json={"signingSecret": WHSEC}, headers=account.headers)
    assert (await resp.json())["webhook"]["signed"] is True
    assert (
        await client.post(path_of(webhook), json={"title": "unsigned"})
    ).status == 401  # cache was dropped
    resp = await client.patch(url, json={"name": "Renamed"}, headers=account.headers)
    assert (await resp.json())["webhook"]["signed"] is True  # other changes keep the secret
    details = await (await client.get(url, headers=account.headers)).json()
    assert WHSEC not in json.dumps(details) and details["webhook"]["signed"] is True
    resp = await client.patch(url, json={"signingSecret": None}, headers=account.headers)
    assert (await resp.json())["webhook"]["signed"] is False
    assert (await client.post(path_of(webhook), json={"title": "unsigned again"})).status == 202


@pytest.mark.parametrize(
    "secret", ["short", "whsec_not-base64!!", "whsec_" + base64.b64encode(b"tiny").decode(), 42, ""]
)
async def test_weak_or_malformed_secrets_are_refused(
    client: TestClient, account: Account, secret: object
) -> None:
    resp = await client.post("/api/webhooks", json={**FULL, "signingSecret": secret}, headers=account.headers)
    assert resp.status == 400
    data = await resp.json()
    assert "signingSecret" in data["error"]
    if isinstance(secret, str) and secret:
        assert secret not in data["error"]
