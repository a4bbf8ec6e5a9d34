"""Signed inbound webhooks: valid signatures in, everything else 401 with nothing queued."""

from __future__ import annotations

import base64
import json
import secrets
import time
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from arq.connections import ArqRedis

from engine.signing import TOLERANCE
from tests.support.factories import (
    BODY,
    FULL,
    GITHUB_SECRET,
    WHSEC,
    Account,
    assert_error,
    create,
    github,
    path_of,
    signed_webhook,
    standard,
)


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


async def test_a_replayed_id_is_refused(client: TestClient, account: Account, redis: ArqRedis) -> None:
    webhook = await signed_webhook(client, account)
    headers = standard(BODY)
    assert (await client.post(path_of(webhook), data=BODY, headers=headers)).status == 202
    resp = await client.post(path_of(webhook), data=BODY, headers=headers)
    assert resp.status == 401
    assert_error(await resp.json(), "REPLAYED_SIGNATURE")
    assert await redis.zcard("arq:queue") == 1


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
